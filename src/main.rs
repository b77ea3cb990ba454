//! The `zmws` command: run a broker, submit and inspect jobs, run any
//! program as a worker.

use std::io::{Read, Write};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use zmws::{Broker, BrokerConfig, Client, Error, JobList, Worker, WorkerConfig};

#[derive(Parser)]
#[command(name = "zmws", version, about = "ZeroMQ Work Server: a Majordomo job broker, client and worker")]
struct Cli {
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a broker in the foreground (SIGINT/SIGTERM stop it).
    Broker(BrokerArgs),
    /// Submit an async job and print its id.
    Submit {
        /// Service name.
        service: String,
        /// Payload (`-` reads standard input; absent means empty).
        payload: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Run a job and print its result.
    Call {
        /// Service name.
        service: String,
        /// Payload (`-` reads standard input; absent means empty).
        payload: Option<String>,
        /// How long to wait for the result.
        #[arg(long, default_value_t = 30_000)]
        timeout_ms: u64,
        #[command(flatten)]
        conn: Conn,
    },
    /// Print a job's status as JSON.
    Status {
        /// Job id (32 hex characters).
        job_id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Print a finished job's result.
    Result {
        /// Job id.
        job_id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Cancel a queued or running job.
    Cancel {
        /// Job id.
        job_id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// List jobs as JSON (queued by default).
    Jobs {
        /// Jobs waiting for a worker.
        #[arg(long, group = "kind")]
        queued: bool,
        /// Jobs being worked on.
        #[arg(long, group = "kind")]
        active: bool,
        /// The most recently finished jobs.
        #[arg(long, group = "kind")]
        history: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// List live workers as JSON.
    Workers {
        #[command(flatten)]
        conn: Conn,
    },
    /// List every service ever offered, with queue depth and counters, as JSON.
    Services {
        #[command(flatten)]
        conn: Conn,
    },
    /// Offer a service by running COMMAND once per job: payload on stdin,
    /// stdout is the result, exit 0 completes, anything else fails with stderr.
    Worker(WorkerArgs),
}

#[derive(Args)]
struct Conn {
    /// Broker client endpoint(s), comma-separated for failover.
    #[arg(long, env = "ZMWS_BROKER", default_value = "tcp://127.0.0.1:5555")]
    broker: String,
}

#[derive(Args)]
struct BrokerArgs {
    /// Client ROUTER endpoint.
    #[arg(long, default_value = "tcp://127.0.0.1:5555")]
    client_endpoint: String,
    /// Worker ROUTER endpoint.
    #[arg(long, default_value = "tcp://127.0.0.1:5556")]
    worker_endpoint: String,
    /// PUB endpoint for job events.
    #[arg(long, default_value = "tcp://127.0.0.1:5557")]
    news_endpoint: String,
    /// Do not publish job events.
    #[arg(long)]
    no_news: bool,
    /// Heartbeat interval (ms).
    #[arg(long, default_value_t = 1000)]
    heartbeat_ms: u64,
    /// Heartbeats a worker may miss before it is purged.
    #[arg(long, default_value_t = 3)]
    liveness: u32,
    /// Time one attempt may run (ms).
    #[arg(long, default_value_t = 60_000)]
    job_timeout_ms: u64,
    /// Attempts per job.
    #[arg(long, default_value_t = 3)]
    max_attempts: u32,
    /// Largest payload accepted (bytes).
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    max_payload: usize,
    /// Most jobs queued at once.
    #[arg(long, default_value_t = 1_000_000)]
    max_queued: usize,
    /// Most live workers per service.
    #[arg(long, default_value_t = 10_000)]
    max_workers_per_service: usize,
    /// How long finished jobs stay queryable (ms).
    #[arg(long, default_value_t = 3_600_000)]
    result_ttl_ms: u64,
    /// Most finished jobs kept.
    #[arg(long, default_value_t = 100_000)]
    max_finished: usize,
    /// Length of the history listing.
    #[arg(long, default_value_t = 100)]
    history: usize,
    /// Directory of the durable job store (SQLite).
    #[arg(long, default_value = "./var")]
    data_dir: std::path::PathBuf,
    /// Keep jobs in memory only (tests, benchmarks).
    #[arg(long)]
    no_persist: bool,
}

#[derive(Args)]
struct WorkerArgs {
    /// Service to offer.
    #[arg(long)]
    service: String,
    /// Broker worker endpoint(s), comma-separated for failover.
    #[arg(long, env = "ZMWS_WORKER_ENDPOINT", default_value = "tcp://127.0.0.1:5556")]
    broker: String,
    /// Jobs run at once.
    #[arg(long, default_value_t = 1)]
    concurrency: u32,
    /// Heartbeat interval (ms); must match the broker's.
    #[arg(long, default_value_t = 1000)]
    heartbeat_ms: u64,
    /// The program and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

fn payload_arg(p: Option<String>) -> Result<Vec<u8>, Error> {
    match p.as_deref() {
        None => Ok(Vec::new()),
        Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf).map_err(|e| Error::Io(format!("reading stdin: {e}")))?;
            Ok(buf)
        }
        Some(s) => Ok(s.as_bytes().to_vec()),
    }
}

fn print_bytes(b: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(b);
    if !b.ends_with(b"\n") {
        let _ = out.write_all(b"\n");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zmws: {e}");
            ExitCode::from(match e.code() as i32 {
                c @ 1..=100 => c as u8 + 1,
                _ => 1,
            })
        }
    }
}

fn run(cmd: Cmd) -> Result<(), Error> {
    match cmd {
        Cmd::Broker(a) => {
            let mut cfg = BrokerConfig {
                client_endpoint: a.client_endpoint,
                worker_endpoint: a.worker_endpoint,
                news_endpoint: if a.no_news { None } else { Some(a.news_endpoint) },
                ..Default::default()
            };
            let e = &mut cfg.engine;
            e.heartbeat_ms = a.heartbeat_ms.max(1);
            e.liveness = a.liveness.max(1);
            e.job_timeout_ms = a.job_timeout_ms.max(1);
            e.max_attempts = a.max_attempts.max(1);
            e.max_payload = a.max_payload;
            e.max_queued = a.max_queued;
            e.max_workers_per_service = a.max_workers_per_service;
            e.result_ttl_ms = a.result_ttl_ms;
            e.max_finished = a.max_finished;
            e.history_len = a.history;
            cfg.data_dir = if a.no_persist { None } else { Some(a.data_dir) };
            let broker = Broker::bind(cfg)?;
            let ep = broker.endpoints().clone();
            eprintln!("zmws broker: clients {} workers {} news {}", ep.client, ep.worker, ep.news.as_deref().unwrap_or("off"));
            install_signal_handlers();
            broker.run(&STOP)
        }
        Cmd::Submit { service, payload, conn } => {
            let mut c = Client::connect(&conn.broker)?;
            let id = c.submit(&service, &payload_arg(payload)?)?;
            println!("{id}");
            Ok(())
        }
        Cmd::Call { service, payload, timeout_ms, conn } => {
            let mut c = Client::connect(&conn.broker)?;
            let r = c.call_with_partials(&service, &payload_arg(payload)?, Duration::from_millis(timeout_ms), &mut |p| {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(p);
                let _ = err.write_all(b"\n");
            })?;
            print_bytes(&r);
            Ok(())
        }
        Cmd::Status { job_id, conn } => {
            println!("{}", Client::connect(&conn.broker)?.status_json(&job_id)?);
            Ok(())
        }
        Cmd::Result { job_id, conn } => {
            print_bytes(&Client::connect(&conn.broker)?.result(&job_id)?);
            Ok(())
        }
        Cmd::Cancel { job_id, conn } => {
            Client::connect(&conn.broker)?.cancel(&job_id)?;
            println!("cancelled {job_id}");
            Ok(())
        }
        Cmd::Jobs { queued: _, active, history, conn } => {
            let kind = if active {
                JobList::Active
            } else if history {
                JobList::History
            } else {
                JobList::Queued
            };
            println!("{}", Client::connect(&conn.broker)?.jobs_json(kind)?);
            Ok(())
        }
        Cmd::Workers { conn } => {
            println!("{}", Client::connect(&conn.broker)?.workers_json()?);
            Ok(())
        }
        Cmd::Services { conn } => {
            println!("{}", Client::connect(&conn.broker)?.services_json()?);
            Ok(())
        }
        Cmd::Worker(a) => run_command_worker(a),
    }
}

/// Runs one job through the external command.
fn run_job(command: &[String], job: &zmws::Job) -> Result<Vec<u8>, String> {
    let mut child = Command::new(&command[0])
        .args(&command[1..])
        .env("ZMWS_JOB_ID", &job.id)
        .env("ZMWS_JOB_ATTEMPT", job.attempt.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", command[0]))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let payload = job.payload.clone();
    // Write on a thread so a command that does not read stdin cannot block us.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&payload);
    });
    let out = child.wait_with_output().map_err(|e| format!("waiting for {}: {e}", command[0]))?;
    let _ = feeder.join();
    if out.status.success() {
        Ok(out.stdout)
    } else {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Err(if err.is_empty() { format!("{} exited with {}", command[0], out.status) } else { err })
    }
}

fn run_command_worker(a: WorkerArgs) -> Result<(), Error> {
    let mut cfg = WorkerConfig::new(&a.broker, &a.service);
    cfg.capacity = a.concurrency.max(1);
    cfg.heartbeat_ms = a.heartbeat_ms.max(1);
    let worker = Arc::new(Worker::with_config(cfg)?);
    install_signal_handlers();
    let command = Arc::new(a.command);
    let stopper = worker.stop_handle();
    let watcher = std::thread::spawn(move || {
        while !STOP.load(Ordering::SeqCst) && !stopper.is_stopped() {
            std::thread::sleep(Duration::from_millis(50));
        }
        stopper.stop();
    });
    tracing::info!(service = %worker.service(), concurrency = a.concurrency, "command worker running");
    let threads: Vec<_> = (0..a.concurrency.max(1))
        .map(|_| {
            let (w, cmd) = (worker.clone(), command.clone());
            std::thread::spawn(move || w.run(|job| run_job(&cmd, job)))
        })
        .collect();
    let mut result = Ok(());
    for t in threads {
        if let Ok(Err(e)) = t.join() {
            result = Err(e);
        }
    }
    worker.stop();
    let _ = watcher.join();
    result
}

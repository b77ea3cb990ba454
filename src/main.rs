//! The `zmws` command: run a broker (with its HTTP gateway), submit and
//! inspect jobs, run any program as a worker, and start, stop and watch a
//! whole installation from a `zmws.toml`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use zmws::config::{connectable, Config, RestartPolicy};
use zmws::gateway::{self, GatewayConfig};
use zmws::supervisor::{self, SuperviseOptions};
use zmws::{Broker, Client, Error, JobList, Worker, WorkerConfig};

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
#[allow(clippy::large_enum_variant)] // parsed once
enum Cmd {
    /// Run a broker in the foreground, with the HTTP gateway on
    /// 127.0.0.1:5580 unless --no-http (SIGINT/SIGTERM stop it).
    Broker(BrokerArgs),
    /// Run the HTTP gateway alone, in front of a broker elsewhere.
    Gateway(GatewayArgs),
    /// Start the broker and the workers of a zmws.toml, detached
    /// (no flag: both; pid files in run/, logs in logs/).
    Start(CtlArgs),
    /// Stop what `start` started: SIGTERM, a grace period for the current
    /// job, then SIGKILL (no flag: both; workers first).
    Stop {
        #[command(flatten)]
        ctl: CtlArgs,
        /// Grace period in ms (default: [process] stop_grace_ms, 10 s).
        #[arg(long)]
        grace_ms: Option<u64>,
    },
    /// Without JOB_ID: show the processes of a zmws.toml (pid, up/down,
    /// workers' service and jobs done). With JOB_ID: print that job's status as JSON.
    Status {
        /// Job id (32 hex characters).
        job_id: Option<String>,
        #[command(flatten)]
        ctl: CtlArgs,
        #[command(flatten)]
        conn: Conn,
    },
    /// Run a worker command and restart it when it ends (used by `start`).
    #[command(hide = true)]
    Supervise(SuperviseArgs),
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
    /// Read [broker] and [http] from this zmws.toml (flags override it).
    #[arg(short = 'c', long)]
    config: Option<PathBuf>,
    /// Client ROUTER endpoint [default: tcp://127.0.0.1:5555].
    #[arg(long)]
    client_endpoint: Option<String>,
    /// Worker ROUTER endpoint [default: tcp://127.0.0.1:5556].
    #[arg(long)]
    worker_endpoint: Option<String>,
    /// PUB endpoint for job events [default: tcp://127.0.0.1:5557].
    #[arg(long)]
    news_endpoint: Option<String>,
    /// Do not publish job events.
    #[arg(long)]
    no_news: bool,
    /// Heartbeat interval (ms) [default: 1000].
    #[arg(long)]
    heartbeat_ms: Option<u64>,
    /// Heartbeats a worker may miss before it is purged [default: 3].
    #[arg(long)]
    liveness: Option<u32>,
    /// Time one attempt may run (ms) [default: 60000].
    #[arg(long)]
    job_timeout_ms: Option<u64>,
    /// Attempts per job [default: 3].
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Largest payload accepted (bytes) [default: 16 MiB].
    #[arg(long)]
    max_payload: Option<usize>,
    /// Most jobs queued at once [default: 1000000].
    #[arg(long)]
    max_queued: Option<usize>,
    /// Most live workers per service [default: 10000].
    #[arg(long)]
    max_workers_per_service: Option<usize>,
    /// How long finished jobs stay queryable (ms) [default: 3600000].
    #[arg(long)]
    result_ttl_ms: Option<u64>,
    /// Most finished jobs kept [default: 100000].
    #[arg(long)]
    max_finished: Option<usize>,
    /// Length of the history listing [default: 100].
    #[arg(long)]
    history: Option<usize>,
    /// Keep polling this many µs after each message before sleeping
    /// (0: never; lower latency for CPU time) [default: 0, at most 10000].
    #[arg(long)]
    spin_us: Option<u32>,
    /// Directory of the durable job store (SQLite) [default: ./var].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Keep jobs in memory only (tests, benchmarks).
    #[arg(long)]
    no_persist: bool,
    #[command(flatten)]
    http: HttpArgs,
    /// Do not run the HTTP gateway.
    #[arg(long)]
    no_http: bool,
}

#[derive(Args)]
struct HttpArgs {
    /// HTTP gateway listen address [default: 127.0.0.1:5580].
    #[arg(long)]
    http_endpoint: Option<String>,
    /// Require `Authorization: Bearer TOKEN` on every route but /healthz.
    #[arg(long, env = "ZMWS_HTTP_TOKEN", hide_env_values = true)]
    http_token: Option<String>,
    /// Largest HTTP request body in bytes [default: 16 MiB].
    #[arg(long)]
    http_max_body: Option<usize>,
    /// SYNC- wait when the request has no ?timeout_ms= [default: 30000].
    #[arg(long)]
    http_timeout_ms: Option<u64>,
}

#[derive(Args)]
struct GatewayArgs {
    /// Read [http] (and the broker endpoint) from this zmws.toml.
    #[arg(short = 'c', long)]
    config: Option<PathBuf>,
    /// Broker client endpoint [default: tcp://127.0.0.1:5555 or the config's].
    #[arg(long, env = "ZMWS_BROKER")]
    broker: Option<String>,
    #[command(flatten)]
    http: HttpArgs,
}

#[derive(Args)]
struct CtlArgs {
    /// The configuration file.
    #[arg(short = 'c', long, default_value = zmws::config::DEFAULT_PATH)]
    config: PathBuf,
    /// Only the broker (the seed's "servers").
    #[arg(long)]
    servers: bool,
    /// Only the workers.
    #[arg(long)]
    workers: bool,
}

impl CtlArgs {
    /// (servers, workers): no flag means both, as in the seed.
    fn selection(&self) -> (bool, bool) {
        if !self.servers && !self.workers {
            (true, true)
        } else {
            (self.servers, self.workers)
        }
    }
}

#[derive(Args)]
struct SuperviseArgs {
    /// Instance name (for log lines).
    #[arg(long)]
    name: String,
    /// Pid file to remove when the supervisor ends on its own.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// The configuration file this instance belongs to (`zmws start` passes
    /// it; `stop` and `status` use it to recognise their own supervisors).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Time the worker gets after SIGTERM before SIGKILL (ms).
    #[arg(long, default_value_t = 10_000)]
    grace_ms: u64,
    /// always, on-failure or never.
    #[arg(long, default_value = "always")]
    restart: String,
    /// First restart delay (ms).
    #[arg(long, default_value_t = 500)]
    restart_delay_ms: u64,
    /// Largest restart delay (ms).
    #[arg(long, default_value_t = 30_000)]
    restart_max_delay_ms: u64,
    /// Run time after which the delay resets (ms).
    #[arg(long, default_value_t = 10_000)]
    restart_reset_ms: u64,
    /// The worker command.
    #[arg(last = true, required = true)]
    command: Vec<String>,
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
    #[arg(long, env = "ZMWS_HEARTBEAT_MS", default_value_t = 1000)]
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

/// Exit status of a usage error (a bad flag or argument): `EX_USAGE` of
/// sysexits.h. clap's own 2 would read as "timeout" (`1 + Code::Timeout`).
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(EXIT_USAGE) } else { ExitCode::SUCCESS };
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: `zmws start` sends stderr to log files.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("zmws: {e}");
            ExitCode::from(match e.code() as i32 {
                c @ 1..=100 => c as u8 + 1,
                _ => 1,
            })
        }
    }
}

fn run(cmd: Cmd) -> Result<ExitCode, Error> {
    match cmd {
        Cmd::Broker(a) => run_broker(a).map(|()| ExitCode::SUCCESS),
        Cmd::Gateway(a) => run_gateway(a).map(|()| ExitCode::SUCCESS),
        Cmd::Start(ctl) => {
            let cfg = Config::load(&ctl.config)?;
            let (servers, workers) = ctl.selection();
            let ok = supervisor::start(&cfg, servers, workers, &mut std::io::stdout())?;
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Cmd::Stop { ctl, grace_ms } => {
            let cfg = Config::load(&ctl.config)?;
            let (servers, workers) = ctl.selection();
            supervisor::stop(&cfg, servers, workers, grace_ms.map(Duration::from_millis), &mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { job_id: Some(job_id), conn, .. } => {
            println!("{}", Client::connect(&conn.broker)?.status_json(&job_id)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { job_id: None, ctl, .. } => {
            let cfg = Config::load(&ctl.config)?;
            let (servers, workers) = ctl.selection();
            let up = supervisor::status(&cfg, servers, workers, &mut std::io::stdout())?;
            // LSB: 3 = not (all) running.
            Ok(if up { ExitCode::SUCCESS } else { ExitCode::from(3) })
        }
        Cmd::Supervise(a) => {
            let restart = RestartPolicy::parse(&a.restart).ok_or_else(|| {
                Error::InvalidArgument(format!("--restart must be always, on-failure or never (got '{}')", a.restart))
            })?;
            let code = supervisor::supervise(SuperviseOptions {
                name: a.name,
                pid_file: a.pid_file,
                grace: Duration::from_millis(a.grace_ms),
                restart,
                delay: Duration::from_millis(a.restart_delay_ms.max(1)),
                max_delay: Duration::from_millis(a.restart_max_delay_ms.max(a.restart_delay_ms).max(1)),
                reset_after: Duration::from_millis(a.restart_reset_ms),
                argv: a.command,
            })?;
            Ok(ExitCode::from(code.clamp(0, 255) as u8))
        }
        other => run_client(other).map(|()| ExitCode::SUCCESS),
    }
}

fn run_client(cmd: Cmd) -> Result<(), Error> {
    match cmd {
        Cmd::Submit { service, payload, conn } => {
            let mut c = Client::connect(&conn.broker)?;
            let id = c.submit(&service, &payload_arg(payload)?)?;
            println!("{id}");
            Ok(())
        }
        Cmd::Call { service, payload, timeout_ms, conn } => {
            let mut c = Client::connect(&conn.broker)?;
            let r =
                c.call_with_partials(&service, &payload_arg(payload)?, Duration::from_millis(timeout_ms), &mut |p| {
                    let mut err = std::io::stderr().lock();
                    let _ = err.write_all(p);
                    let _ = err.write_all(b"\n");
                })?;
            print_bytes(&r);
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
        Cmd::Broker(_)
        | Cmd::Gateway(_)
        | Cmd::Start(_)
        | Cmd::Stop { .. }
        | Cmd::Status { .. }
        | Cmd::Supervise(_) => {
            unreachable!("handled in run")
        }
    }
}

/// Applies the HTTP flags over the `[http]` section.
fn apply_http_args(cfg: &mut Config, a: HttpArgs) -> Result<(), Error> {
    if let Some(e) = a.http_endpoint {
        cfg.http.endpoint = e;
    }
    if let Some(t) = a.http_token {
        cfg.http.token = if t.is_empty() { None } else { Some(t) };
    }
    if let Some(m) = a.http_max_body {
        cfg.http.max_body_bytes = in_range("--http-max-body", m as u64, zmws::config::limits::MAX_BODY_BYTES)? as usize;
    }
    if let Some(t) = a.http_timeout_ms {
        cfg.http.default_timeout_ms = in_range("--http-timeout-ms", t, zmws::config::limits::HTTP_TIMEOUT_MS)?;
        cfg.http.max_timeout_ms = cfg.http.max_timeout_ms.max(cfg.http.default_timeout_ms);
    }
    Ok(())
}

/// `zmws broker`: the broker loop on its own thread, the HTTP gateway beside
/// it (talking to the broker's client endpoint over TCP or IPC: the broker's
/// ZeroMQ context is private, so inproc is not available).
fn run_broker(a: BrokerArgs) -> Result<(), Error> {
    let mut cfg = match &a.config {
        Some(p) => Config::load(p)?,
        None => Config::defaults(),
    };
    let b = &mut cfg.broker;
    if let Some(v) = a.client_endpoint {
        b.client_endpoint = v;
    }
    if let Some(v) = a.worker_endpoint {
        b.worker_endpoint = v;
    }
    if let Some(v) = a.news_endpoint {
        b.news_endpoint = Some(v);
    }
    if a.no_news {
        b.news_endpoint = None;
    }
    let e = &mut b.engine;
    use zmws::config::limits;
    if let Some(v) = a.heartbeat_ms {
        e.heartbeat_ms = in_range("--heartbeat-ms", v, limits::HEARTBEAT_MS)?;
    }
    if let Some(v) = a.liveness {
        e.liveness = in_range("--liveness", v as u64, limits::LIVENESS)? as u32;
    }
    if let Some(v) = a.job_timeout_ms {
        e.job_timeout_ms = in_range("--job-timeout-ms", v, limits::JOB_TIMEOUT_MS)?;
    }
    if let Some(v) = a.max_attempts {
        e.max_attempts = in_range("--max-attempts", v as u64, limits::MAX_ATTEMPTS)? as u32;
    }
    if let Some(v) = a.max_payload {
        e.max_payload = in_range("--max-payload", v as u64, limits::MAX_PAYLOAD)? as usize;
    }
    if let Some(v) = a.max_queued {
        e.max_queued = in_range("--max-queued", v as u64, limits::MAX_QUEUED)? as usize;
    }
    if let Some(v) = a.max_workers_per_service {
        e.max_workers_per_service =
            in_range("--max-workers-per-service", v as u64, limits::MAX_WORKERS_PER_SERVICE)? as usize;
    }
    if let Some(v) = a.result_ttl_ms {
        e.result_ttl_ms = in_range("--result-ttl-ms", v, limits::RESULT_TTL_MS)?;
    }
    if let Some(v) = a.max_finished {
        e.max_finished = in_range("--max-finished", v as u64, limits::MAX_FINISHED)? as usize;
    }
    if let Some(v) = a.history {
        e.history_len = in_range("--history", v as u64, limits::HISTORY)? as usize;
    }
    if let Some(v) = a.spin_us {
        if v > zmws::broker::MAX_SPIN_US {
            return Err(zmws::Error::InvalidArgument(format!(
                "--spin-us must be at most {}",
                zmws::broker::MAX_SPIN_US
            )));
        }
        b.spin_us = v;
    }
    if let Some(d) = a.data_dir {
        b.data_dir = d;
    }
    if a.no_persist {
        b.persist = false;
    }
    if a.no_http {
        cfg.http.enabled = false;
    }
    // An address the user chose must work; the built-in default may be taken
    // (another broker on this machine, tests): then run without HTTP, loudly.
    // Bound once, here, and handed to the gateway: no window for a race.
    let http_explicit = a.http.http_endpoint.is_some() || a.config.is_some();
    apply_http_args(&mut cfg, a.http)?;
    let listener = if cfg.http.enabled {
        match gateway::bind(&cfg.http.endpoint) {
            Ok(l) => Some(l),
            Err((addr, e)) if e.kind() == std::io::ErrorKind::AddrInUse && !http_explicit => {
                tracing::warn!("HTTP gateway off: the default address {addr} is in use (choose one with --http-endpoint, or --no-http)");
                None
            }
            Err((addr, e)) => return Err(Error::Io(format!("cannot listen on http://{addr}: {e}"))),
        }
    } else {
        None
    };

    let broker = Broker::bind(cfg.broker.to_broker_config())?;
    let ep = broker.endpoints().clone();
    let gw = match listener {
        Some(l) => {
            if ep.client.starts_with("inproc://") {
                return Err(Error::InvalidArgument(
                    "the embedded HTTP gateway needs a tcp:// or ipc:// client endpoint (or run with --no-http)".into(),
                ));
            }
            Some(gateway::start_on(l, GatewayConfig::from_section(&cfg.http, connectable(&ep.client)))?)
        }
        None => None,
    };
    eprintln!(
        "zmws broker: clients {} workers {} news {} http {}",
        ep.client,
        ep.worker,
        ep.news.as_deref().unwrap_or("off"),
        gw.as_ref().map(|g| format!("http://{}", g.local_addr())).unwrap_or_else(|| "off".into())
    );
    install_signal_handlers();
    let broker_stop = Arc::new(AtomicBool::new(false));
    let flag = broker_stop.clone();
    let thread = std::thread::Builder::new()
        .name("zmws-broker".into())
        .spawn(move || broker.run(&flag))
        .map_err(|e| Error::Io(format!("cannot start the broker thread: {e}")))?;
    while !STOP.load(Ordering::SeqCst) && !thread.is_finished() {
        if gw.as_ref().map(|g| g.is_finished()).unwrap_or(false) {
            tracing::error!("the HTTP gateway stopped unexpectedly; stopping the broker");
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The gateway first: HTTP clients get 503 instead of waiting on a broker that is going away.
    if let Some(g) = gw {
        g.stop();
    }
    broker_stop.store(true, Ordering::SeqCst);
    thread.join().map_err(|_| Error::Internal("the broker thread panicked".into()))?
}

/// `zmws gateway`: the HTTP gateway alone.
fn run_gateway(a: GatewayArgs) -> Result<(), Error> {
    let mut cfg = match &a.config {
        Some(p) => Config::load(p)?,
        None => Config::defaults(),
    };
    apply_http_args(&mut cfg, a.http)?;
    let broker = a.broker.unwrap_or_else(|| cfg.client_endpoint());
    install_signal_handlers();
    gateway::run(GatewayConfig::from_section(&cfg.http, broker), &STOP)
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

/// `value` if it lies in `min..=max`, else an invalid-argument error naming `flag`
/// (the same ranges as the config file's keys).
fn in_range(flag: &str, value: u64, (min, max): (u64, u64)) -> Result<u64, Error> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(Error::InvalidArgument(format!("{flag} must be between {min} and {max} (got {value})")))
    }
}

/// Refuses a worker command that cannot run (not found, not executable)
/// before the worker registers: otherwise it would take jobs only to fail each.
fn check_runnable(program: &str) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false);
    let found = if program.contains('/') {
        runnable(Path::new(program))
    } else {
        // Without PATH, execvp (what running the command uses) looks in /bin:/usr/bin.
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/bin:/usr/bin".into());
        std::env::split_paths(&path).any(|dir| runnable(&dir.join(program)))
    };
    if found {
        Ok(())
    } else if program.contains('/') {
        Err(Error::InvalidArgument(format!("cannot run {program}: no such executable file")))
    } else {
        Err(Error::InvalidArgument(format!("cannot run {program}: not found in PATH")))
    }
}

fn run_command_worker(a: WorkerArgs) -> Result<(), Error> {
    check_runnable(&a.command[0])?;
    let mut cfg = WorkerConfig::new(&a.broker, &a.service);
    cfg.capacity = in_range("--concurrency", a.concurrency as u64, zmws::config::limits::CONCURRENCY)? as u32;
    cfg.heartbeat_ms = in_range("--heartbeat-ms", a.heartbeat_ms, zmws::config::limits::HEARTBEAT_MS)?;
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

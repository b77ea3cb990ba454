//! zmws-bench: the zmws side of the peer benchmark (issue 8).
//!
//! Runs the scenarios of `../shared/bench-peers` (sync, tput, pipe, fill /
//! rss / drain) against a `zmws broker` started as a separate process on
//! ephemeral loopback ports, with workers in separate processes (this binary
//! re-executed in `worker` mode), and prints one `key=value` line per
//! scenario in the peers' format (`peer=zmws scenario=... ...`).
//!
//! ```text
//! zmws-bench sync      [opts]   N serial Client::call round trips, W echo workers
//! zmws-bench tput      [opts]   N serial Client::submit, W workers running
//! zmws-bench pipe      [opts]   N async jobs, `--window` per Client::submit_batch
//!                               message, W workers running (the peers' pipe_w4)
//! zmws-bench pipecall  [opts]   N jobs through one Client::batch (zmws.call, every
//!                               result back at the client; printed as pipecall_wW)
//! zmws-bench filldrain [opts]   N serial submits with no worker (fill), broker
//!                               RSS (rss_N_queued), then W workers drain them
//! zmws-bench wakeup [--n N]    the machine's cost of one thread hand-off
//!                               (eventfd between threads, TCP between
//!                               processes; free, one CPU, two CPUs)
//! zmws-bench report RAW         medians of a raw results file + comparison table
//! zmws-bench worker ...         (internal) one worker process
//!
//! opts: --n N (20000 sync / 100000 otherwise)  --workers W (1 sync / 4)
//!       --payload BYTES (100)  --capacity C (1)  --window J (pipe: jobs per
//!       submit_batch message, 1000)
//!       --zmws PATH (broker binary; default $ZMWS_BIN, else target/release/zmws)
//!       --transport tcp|ipc    --persist (durable store in a temp dir)
//!       --news (job events on, with one SUB socket in this process
//!       subscribed to everything and draining them)  --quiet-fill (filldrain: fill and rss
//!       lines to stderr only)  --broker-arg ARG (repeatable, passed on)
//!       --no-drain (filldrain: stop after the RSS line, e.g. for --n 1000000)
//!       --batch-fill (filldrain: fill with Client::submit_batch, `--window`
//!       jobs per message, instead of serial submits; the RSS is the same)
//!       --raw-worker (experiment: workers speak MDP/0.2 on their own DEALER
//!       socket instead of using zmws::Worker, to measure the library's cost)
//! env:  BENCH_WAIT_S (60)  wait for completions / results
//!       ZMWS_BROKER_WRAP   command prefix for the broker, e.g.
//!                          "valgrind --tool=callgrind --callgrind-out-file=F"
//!       ZMWS_WORKER_WRAP   command prefix for each worker, e.g. "taskset -c 1"
//!       ZMWS_BROKER_STOP_S (3)  grace period after SIGTERM to the broker
//! ```
//!
//! Completions (tput, pipe, drain) are counted exactly like the peers do: a
//! page shared by every process (a memfd created before the workers are
//! spawned and inherited by them, mapped `MAP_SHARED`) holds a counter that
//! each worker atomically increments after `Worker::complete` returned; the
//! increment that reaches N stamps CLOCK_MONOTONIC (system-wide). Nothing of
//! this goes through the broker.

mod report;
mod wakeup;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use zmws::{Client, Worker, WorkerConfig};

/// The one service every benchmark job goes to.
const SERVICE: &str = "bench";
/// `Client::batch` keeps this many calls in flight (`BATCH_WINDOW` in
/// src/client.rs); printed as `window=` in the pipe lines.
const CLIENT_BATCH_WINDOW: u64 = 2000;

type Res<T> = std::result::Result<T, String>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match run(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("zmws-bench: {e}");
            2
        }
    };
    std::process::exit(code);
}

fn run(args: Vec<String>) -> Res<()> {
    let Some(mode) = args.first().cloned() else {
        return Err(usage());
    };
    match mode.as_str() {
        "worker" => worker_main(&args[1..]),
        "report" => {
            let path = args.get(1).ok_or_else(usage)?;
            report::report(path)
        }
        "wakeup" => {
            let n = match args.get(1).map(String::as_str) {
                Some("--n") => args.get(2).and_then(|v| v.parse().ok()).ok_or_else(usage)?,
                Some(_) => return Err(usage()),
                None => 20_000,
            };
            wakeup::run(n)
        }
        "sync" | "tput" | "pipe" | "pipecall" | "filldrain" => {
            let opts = Opts::parse(&mode, &args[1..])?;
            match mode.as_str() {
                "sync" => do_sync(&opts),
                "tput" => do_tput(&opts),
                "pipe" => do_pipe(&opts),
                "pipecall" => do_pipecall(&opts),
                _ => do_filldrain(&opts),
            }
        }
        _ => Err(usage()),
    }
}

fn usage() -> String {
    "usage: zmws-bench sync|tput|pipe|pipecall|filldrain [--n N] [--workers W] [--payload B] [--capacity C] [--window J] \
     [--zmws PATH] [--transport tcp|ipc] [--persist] [--news] [--quiet-fill] [--no-drain] [--raw-worker] [--spin-us US] \
     [--broker-arg ARG]... | wakeup [--n N] | report RAWFILE"
        .to_string()
}

// ------------------------------------------------------------------ options

struct Opts {
    n: u64,
    workers: usize,
    payload: usize,
    capacity: u32,
    window: usize,
    zmws: String,
    ipc: bool,
    persist: bool,
    news: bool,
    quiet_fill: bool,
    raw_worker: bool,
    no_drain: bool,
    batch_fill: bool,
    broker_args: Vec<String>,
    /// The broker's `--spin-us` (0: the default, no spinning).
    spin_us: u64,
    wait: Duration,
}

impl Opts {
    fn parse(mode: &str, args: &[String]) -> Res<Opts> {
        let default_bin = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/release/zmws").to_string();
        let mut o = Opts {
            n: if mode == "sync" { 20_000 } else { 100_000 },
            workers: if mode == "sync" { 1 } else { 4 },
            payload: 100,
            capacity: 1,
            window: 1000,
            zmws: std::env::var("ZMWS_BIN").unwrap_or(default_bin),
            ipc: false,
            persist: false,
            news: false,
            quiet_fill: false,
            raw_worker: false,
            no_drain: false,
            batch_fill: false,
            broker_args: Vec::new(),
            spin_us: 0,
            wait: Duration::from_secs_f64(
                std::env::var("BENCH_WAIT_S").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(60.0).max(1.0),
            ),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
            let num = |s: String, name: &str| s.parse::<u64>().map_err(|_| format!("{name}: not a number: {s}"));
            match a.as_str() {
                "--n" => o.n = num(val(a)?, a)?,
                "--workers" => o.workers = num(val(a)?, a)? as usize,
                "--payload" => o.payload = num(val(a)?, a)? as usize,
                "--capacity" => o.capacity = num(val(a)?, a)? as u32,
                "--window" => o.window = num(val(a)?, a)? as usize,
                "--zmws" => o.zmws = val(a)?,
                "--transport" => {
                    o.ipc = match val(a)?.as_str() {
                        "tcp" => false,
                        "ipc" => true,
                        other => return Err(format!("--transport tcp|ipc, not {other}")),
                    }
                }
                "--persist" => o.persist = true,
                "--news" => o.news = true,
                "--quiet-fill" => o.quiet_fill = true,
                "--raw-worker" => o.raw_worker = true,
                "--no-drain" => o.no_drain = true,
                "--batch-fill" => o.batch_fill = true,
                "--broker-arg" => o.broker_args.push(val(a)?),
                "--spin-us" => o.spin_us = num(val(a)?, a)?,
                other => return Err(format!("unknown option {other}\n{}", usage())),
            }
        }
        if o.n == 0 || o.workers == 0 || o.workers > 64 || o.capacity == 0 || o.window == 0 || o.window > 10_000 {
            return Err("need N >= 1, 1 <= W <= 64, C >= 1, 1 <= J <= 10000".into());
        }
        Ok(o)
    }

    /// Scenario-name suffix for the non-default variants.
    fn suffix(&self) -> String {
        let mut s = String::new();
        if self.capacity > 1 {
            s += &format!("_cap{}", self.capacity);
        }
        if self.persist {
            s += "_persist";
        }
        if self.ipc {
            s += "_ipc";
        }
        if self.news {
            s += "_news";
        }
        if self.raw_worker {
            s += "_rawworker";
        }
        if self.batch_fill {
            s += "_batchfill";
        }
        if self.spin_us > 0 {
            s += &format!("_spin{}", self.spin_us);
        }
        s
    }
}

// ------------------------------------------------------------------ clock, stats

/// CLOCK_MONOTONIC in ns: system-wide, so stamps of different processes compare.
fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Nearest-rank percentile (p in 0..100) of sorted ns samples, in µs.
fn pct_us(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1] as f64 / 1000.0
}

fn rate(n: u64, ns: u64) -> f64 {
    n as f64 / (ns.max(1) as f64 / 1e9)
}

fn payload_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

// ------------------------------------------------------------------ shared counter

#[repr(C)]
struct CounterPage {
    done: AtomicU64,
    target: AtomicU64,
    t_end_ns: AtomicU64,
    errors: AtomicU64,
}

/// The completion counter: one page of a memfd, mapped shared by the parent
/// and (inherited fd) every worker process.
struct Counter {
    fd: i32,
    page: *const CounterPage,
}

impl Counter {
    fn create(target: u64) -> Res<Counter> {
        // No MFD_CLOEXEC: the workers inherit the fd through exec.
        // SAFETY: plain syscalls on a name we own; the fd is checked.
        let fd = unsafe { libc::memfd_create(c"zmws-bench-counter".as_ptr(), 0) };
        if fd < 0 {
            return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: fd is a fresh memfd.
        if unsafe { libc::ftruncate(fd, 4096) } != 0 {
            return Err(format!("ftruncate: {}", std::io::Error::last_os_error()));
        }
        let c = Counter::map(fd)?;
        c.get().target.store(target, Ordering::SeqCst);
        Ok(c)
    }

    fn map(fd: i32) -> Res<Counter> {
        // SAFETY: maps one page of the memfd; checked for MAP_FAILED. The
        // page is zero-filled, a valid bit pattern for the atomics.
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
        };
        if p == libc::MAP_FAILED {
            return Err(format!("mmap counter: {}", std::io::Error::last_os_error()));
        }
        Ok(Counter { fd, page: p as *const CounterPage })
    }

    fn get(&self) -> &CounterPage {
        // SAFETY: the mapping lives as long as the process (never unmapped).
        unsafe { &*self.page }
    }

    fn hit(&self) {
        let c = self.get();
        let n = c.done.fetch_add(1, Ordering::SeqCst) + 1;
        let target = c.target.load(Ordering::SeqCst);
        if target != 0 && n == target {
            c.t_end_ns.store(now_ns(), Ordering::SeqCst);
        }
    }

    /// Polls (1 ms) until the target is reached; returns the end stamp.
    fn wait(&self, timeout: Duration) -> Res<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let t = self.get().t_end_ns.load(Ordering::SeqCst);
            if t != 0 {
                return Ok(t);
            }
            if Instant::now() > deadline {
                let c = self.get();
                return Err(format!(
                    "timeout: {}/{} jobs completed, {} worker errors",
                    c.done.load(Ordering::SeqCst),
                    c.target.load(Ordering::SeqCst),
                    c.errors.load(Ordering::SeqCst)
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

// ------------------------------------------------------------------ child processes

/// CPU time (ns) a process's live threads have used so far: the sum of the
/// first field of /proc/PID/task/*/schedstat (0 when it is gone).
fn cpu_ns_of(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

/// `[client_cpu_us_per_job=…] worker_cpu_us_per_job=…`: where the CPU the
/// broker did not use went: this process since `client_since_ns` (the
/// client and its libzmq thread), and all worker processes together.
fn side_cpu_keys(client_since_ns: Option<u64>, workers: &Workers, n: u64) -> String {
    let per_job = |ns: u64| ns as f64 / 1000.0 / n as f64;
    let w = format!("worker_cpu_us_per_job={:.1}", per_job(workers.cpu_ns()));
    match client_since_ns {
        Some(t) => format!("client_cpu_us_per_job={:.1} {w}", per_job(cpu_ns_of(std::process::id()).saturating_sub(t))),
        None => w,
    }
}

/// Children die with us: SIGKILL on parent death (and a check that the
/// parent did not die before the prctl took effect).
fn tie_to_parent(cmd: &mut Command) {
    // SAFETY: getpid is async-signal-safe.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure only makes async-signal-safe syscalls.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                libc::_exit(3);
            }
            Ok(())
        });
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL; always reaps.
fn stop_child(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A `zmws broker` process on ephemeral loopback ports (or ipc:// paths).
struct BrokerProc {
    child: Child,
    client_ep: String,
    worker_ep: String,
    /// With --news: the thread draining the event stream (ends with the process).
    _news_sub: Option<std::thread::JoinHandle<()>>,
    ipc_dir: Option<std::path::PathBuf>,
    data_dir: Option<std::path::PathBuf>,
    stop_grace: Duration,
}

impl BrokerProc {
    fn start(o: &Opts) -> Res<BrokerProc> {
        let help = Command::new(&o.zmws)
            .args(["broker", "--help"])
            .output()
            .map_err(|e| format!("cannot run {} (build it with `cargo build --release`): {e}", o.zmws))?;
        let help = String::from_utf8_lossy(&help.stdout).into_owned();
        let tag = format!("zmws-bench-{}", std::process::id());
        let (client_ep, worker_ep, ipc_dir) = if o.ipc {
            let dir = std::env::temp_dir().join(&tag);
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            (format!("ipc://{}/clients", dir.display()), format!("ipc://{}/workers", dir.display()), Some(dir))
        } else {
            ("tcp://127.0.0.1:0".to_string(), "tcp://127.0.0.1:0".to_string(), None)
        };
        let wrap: Vec<String> =
            std::env::var("ZMWS_BROKER_WRAP").unwrap_or_default().split_whitespace().map(String::from).collect();
        let mut cmd = match wrap.split_first() {
            Some((prog, rest)) => {
                let mut c = Command::new(prog);
                c.args(rest).arg(&o.zmws);
                c
            }
            None => Command::new(&o.zmws),
        };
        cmd.args(["--log-level", "warn", "broker", "--client-endpoint", &client_ep, "--worker-endpoint", &worker_ep]);
        if o.news {
            cmd.args(["--news-endpoint", "tcp://127.0.0.1:0"]);
        } else {
            cmd.arg("--no-news");
        }
        let mut data_dir = None;
        if help.contains("--no-persist") {
            if o.persist {
                let dir = std::env::temp_dir().join(format!("{tag}-data"));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                cmd.arg("--data-dir").arg(&dir);
                data_dir = Some(dir);
            } else {
                cmd.arg("--no-persist");
            }
        } else if o.persist {
            return Err("this zmws broker has no durable store (no --data-dir/--no-persist)".into());
        }
        // The embedded HTTP gateway (newer brokers) is not part of what is
        // measured: off, like the news socket.
        if help.contains("--no-http") {
            cmd.arg("--no-http");
        }
        cmd.args(&o.broker_args);
        if o.spin_us > 0 {
            cmd.args(["--spin-us", &o.spin_us.to_string()]);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        tie_to_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| format!("cannot start broker {}: {e}", o.zmws))?;
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel::<(String, String, String)>();
        // Read the "zmws broker: clients X workers Y news Z" line, then keep
        // draining (and echoing) stderr so the broker never blocks on it.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("zmws broker: clients ").nth(1) {
                    let words: Vec<&str> = rest.split_whitespace().collect();
                    if let (Some(c), Some(w)) = (words.first(), words.get(2)) {
                        let news = words.get(4).unwrap_or(&"off").to_string();
                        if let Some(tx) = tx.take() {
                            let _ = tx.send((c.to_string(), w.to_string(), news));
                        }
                        continue;
                    }
                }
                eprintln!("[broker] {line}");
            }
        });
        let grace = std::env::var("ZMWS_BROKER_STOP_S").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(3.0);
        let mut b = BrokerProc {
            child,
            client_ep: String::new(),
            worker_ep: String::new(),
            _news_sub: None,
            ipc_dir,
            data_dir,
            stop_grace: Duration::from_secs_f64(grace),
        };
        let startup = if wrap.is_empty() { Duration::from_secs(10) } else { Duration::from_secs(60) };
        match rx.recv_timeout(startup) {
            Ok((c, w, news)) => {
                b.client_ep = c;
                b.worker_ep = w;
                if o.news {
                    // XPUB: events are only built while someone subscribes.
                    b._news_sub = Some(news_subscriber(&news)?);
                }
                eprintln!("# broker pid {} clients {} workers {}", b.pid(), b.client_ep, b.worker_ep);
                Ok(b)
            }
            Err(_) => Err("the broker did not report its endpoints".into()),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time (ns) the broker's threads have used so far.
    fn cpu_ns(&self) -> u64 {
        cpu_ns_of(self.pid())
    }

    /// `server_cpu_us_per_job=…`: broker CPU since `since_ns` per job (the
    /// same measure compare.sh takes of gearmand and beanstalkd).
    fn cpu_key(&self, since_ns: u64, n: u64) -> String {
        format!("server_cpu_us_per_job={:.1}", self.cpu_ns().saturating_sub(since_ns) as f64 / 1000.0 / n as f64)
    }

    /// (VmHWM, VmRSS) in kB from /proc/PID/status.
    fn rss_kb(&self) -> Res<(u64, u64)> {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .map_err(|e| format!("broker status: {e}"))?;
        let field = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| format!("no {name} in /proc/{}/status", self.pid()))
        };
        Ok((field("VmHWM:")?, field("VmRSS:")?))
    }
}

impl Drop for BrokerProc {
    fn drop(&mut self) {
        stop_child(&mut self.child, self.stop_grace);
        for d in [&self.ipc_dir, &self.data_dir].into_iter().flatten() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A SUB socket subscribed to every job event, drained on a thread until
/// the process ends (so `--news` measures the broker with events flowing).
fn news_subscriber(endpoint: &str) -> Res<std::thread::JoinHandle<()>> {
    let zerr = |e: zmq::Error| format!("news subscriber: {e}");
    if !endpoint.contains("://") {
        return Err(format!("the broker reported no news endpoint ({endpoint})"));
    }
    let ctx = zmq::Context::new();
    let s = ctx.socket(zmq::SUB).map_err(zerr)?;
    s.set_rcvhwm(0).map_err(zerr)?;
    s.connect(endpoint).map_err(zerr)?;
    s.set_subscribe(b"").map_err(zerr)?;
    // give the subscription time to reach the broker before jobs start
    std::thread::sleep(Duration::from_millis(200));
    Ok(std::thread::spawn(move || {
        let _ctx = ctx;
        while s.recv_multipart(0).is_ok() {}
    }))
}

/// Worker processes: this binary in `worker` mode.
struct Workers(Vec<Child>);

impl Workers {
    /// CPU time all worker processes have used so far.
    fn cpu_ns(&self) -> u64 {
        self.0.iter().map(|c| cpu_ns_of(c.id())).sum()
    }

    fn spawn(o: &Opts, endpoint: &str, echo: bool, counter: Option<&Counter>) -> Res<Workers> {
        let (w, capacity) = (o.workers, o.capacity);
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let fd = counter.map(|c| c.fd).unwrap_or(-1);
        let mut v = Vec::with_capacity(w);
        // ZMWS_WORKER_WRAP (experiments, like ZMWS_BROKER_WRAP): a command
        // to start each worker under, e.g. "taskset -c 1".
        let wrap: Vec<String> =
            std::env::var("ZMWS_WORKER_WRAP").unwrap_or_default().split_whitespace().map(String::from).collect();
        for _ in 0..w {
            let mut cmd = match wrap.split_first() {
                Some((prog, rest)) => {
                    let mut c = Command::new(prog);
                    c.args(rest).arg(&exe);
                    c
                }
                None => Command::new(&exe),
            };
            let kind = if o.raw_worker { "raw" } else { "lib" };
            cmd.args(["worker", endpoint, &capacity.to_string(), if echo { "1" } else { "0" }, &fd.to_string(), kind]);
            cmd.stdin(Stdio::null()).stdout(Stdio::null());
            tie_to_parent(&mut cmd);
            v.push(cmd.spawn().map_err(|e| format!("cannot start worker: {e}"))?);
        }
        Ok(Workers(v))
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &self.0 {
            // SAFETY: signalling our own children.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        }
        for c in &mut self.0 {
            stop_child(c, Duration::from_secs(2));
        }
    }
}

/// Worker mode: `worker ENDPOINT CAPACITY ECHO COUNTER_FD lib|raw`.
fn worker_main(args: &[String]) -> Res<()> {
    let [endpoint, capacity, echo, fd, kind] = args else {
        return Err("worker ENDPOINT CAPACITY ECHO COUNTER_FD lib|raw".into());
    };
    let capacity: u32 = capacity.parse().map_err(|_| "bad capacity")?;
    let echo = echo == "1";
    let fd: i32 = fd.parse().map_err(|_| "bad fd")?;
    let counter = if fd >= 0 { Some(Counter::map(fd)?) } else { None };
    if kind == "raw" {
        return raw_worker_main(endpoint, capacity, echo, counter.as_ref());
    }
    let mut cfg = WorkerConfig::new(endpoint, SERVICE);
    cfg.capacity = capacity;
    let worker = Worker::with_config(cfg).map_err(|e| format!("worker: {e}"))?;
    loop {
        match worker.next_job(Duration::from_millis(200)) {
            Ok(Some(job)) => {
                let result: &[u8] = if echo { &job.payload } else { b"" };
                match worker.complete(&job.id, result) {
                    Ok(()) => {
                        if let Some(c) = &counter {
                            c.hit();
                        }
                    }
                    Err(e) => {
                        if let Some(c) = &counter {
                            c.get().errors.fetch_add(1, Ordering::SeqCst);
                        }
                        return Err(format!("complete: {e}"));
                    }
                }
            }
            Ok(None) => {}
            Err(e) => return Err(format!("next_job: {e}")),
        }
    }
}

/// Experiment: a minimal MDP/0.2 worker on one DEALER socket (no
/// background thread, no in-process relay), written from docs/PROTOCOL.md.
/// Comparing it with `zmws::Worker` shows what the library's worker design
/// costs per job. READY carries the zmws extension frame (capacity), so
/// REQUESTs are `MDPW02 0x02 job_id "" attempt payload…`.
fn raw_worker_main(endpoint: &str, capacity: u32, echo: bool, counter: Option<&Counter>) -> Res<()> {
    const MDPW02: &[u8] = b"MDPW02";
    let zerr = |e: zmq::Error| format!("raw worker: {e}");
    let ctx = zmq::Context::new();
    let s = ctx.socket(zmq::DEALER).map_err(zerr)?;
    s.set_linger(0).map_err(zerr)?;
    s.set_sndhwm(100_000).map_err(zerr)?;
    s.set_rcvhwm(100_000).map_err(zerr)?;
    s.connect(endpoint).map_err(zerr)?;
    let ext = format!("zmws:1 capacity={capacity}");
    s.send_multipart([MDPW02, &[0x01], SERVICE.as_bytes(), ext.as_bytes()], 0).map_err(zerr)?;
    let heartbeat = Duration::from_millis(1000);
    let mut last_sent = Instant::now();
    loop {
        if s.poll(zmq::POLLIN, 250).map_err(zerr)? > 0 {
            while let Ok(frames) = s.recv_multipart(zmq::DONTWAIT) {
                if frames.len() < 2 || frames[0] != MDPW02 {
                    continue;
                }
                match frames[1].as_slice() {
                    [0x02] if frames.len() >= 5 => {
                        let payload: Vec<u8> = if echo { frames[5..].concat() } else { Vec::new() };
                        s.send_multipart([MDPW02, &[0x04], &frames[2], b"", &payload], 0).map_err(zerr)?;
                        last_sent = Instant::now();
                        if let Some(c) = counter {
                            c.hit();
                        }
                    }
                    [0x06] => return Err("raw worker: broker sent DISCONNECT".into()),
                    _ => {} // heartbeat
                }
            }
        }
        if last_sent.elapsed() >= heartbeat {
            s.send_multipart([MDPW02, &[0x05]], 0).map_err(zerr)?;
            last_sent = Instant::now();
        }
    }
}

// ------------------------------------------------------------------ helpers

fn connect(b: &BrokerProc) -> Res<Client> {
    let mut c = Client::connect(&b.client_ep).map_err(|e| format!("client connect: {e}"))?;
    c.set_request_timeout(Duration::from_secs(10));
    Ok(c)
}

fn live_workers(c: &mut Client) -> Res<usize> {
    let ws = c.workers().map_err(|e| format!("zmws.workers: {e}"))?;
    Ok(ws.iter().filter(|w| w.service == SERVICE && w.state != "dead").count())
}

/// Polls `zmws.workers` until exactly `want` live workers offer the service.
fn wait_workers(c: &mut Client, want: usize) -> Res<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = live_workers(c)?;
        if n == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("timeout waiting for {want} registered workers (have {n})"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ------------------------------------------------------------------ scenarios

fn do_sync(o: &Opts) -> Res<()> {
    let b = BrokerProc::start(o)?;
    let cpu0 = b.cpu_ns();
    let _workers = Workers::spawn(o, &b.worker_ep, true, None)?;
    let mut c = connect(&b)?;
    wait_workers(&mut c, o.workers)?;
    let buf = payload_bytes(o.payload);
    let warm = (o.n / 10).min(1000);
    let mut lat = Vec::with_capacity(o.n as usize);
    let mut t0 = now_ns();
    for i in 0..warm + o.n {
        if i == warm {
            t0 = now_ns();
        }
        let s = now_ns();
        let r = c.call(SERVICE, &buf, Duration::from_secs(10)).map_err(|e| format!("call {i}: {e}"))?;
        let e = now_ns();
        if r != buf {
            return Err(format!("call {i}: wrong result ({} bytes)", r.len()));
        }
        if i >= warm {
            lat.push(e - s);
        }
    }
    let t1 = now_ns();
    lat.sort_unstable();
    println!(
        "peer=zmws scenario=sync_w{}{} jobs_per_s={:.0} p50_us={:.1} p99_us={:.1} n={} payload={} {}",
        o.workers,
        o.suffix(),
        rate(o.n, t1 - t0),
        pct_us(&lat, 50.0),
        pct_us(&lat, 99.0),
        o.n,
        o.payload,
        b.cpu_key(cpu0, o.n)
    );
    Ok(())
}

/// The shared frame of the throughput scenarios: a fresh broker, W workers
/// counting completions, the clock around `submit`, one line in the peers'
/// format (`window=` when given).
fn throughput(
    o: &Opts,
    scenario: &str,
    window: Option<u64>,
    submit: impl FnOnce(&mut Client, &[u8]) -> Res<()>,
) -> Res<()> {
    let b = BrokerProc::start(o)?;
    let cpu0 = b.cpu_ns();
    let ctr = Counter::create(o.n)?;
    let workers = Workers::spawn(o, &b.worker_ep, false, Some(&ctr))?;
    let mut c = connect(&b)?;
    wait_workers(&mut c, o.workers)?;
    let buf = payload_bytes(o.payload);
    let me0 = cpu_ns_of(std::process::id());
    let t0 = now_ns();
    submit(&mut c, &buf)?;
    let t1 = now_ns();
    let t_end = ctr.wait(o.wait)?;
    let window = window.map(|w| format!(" window={w}")).unwrap_or_default();
    println!(
        "peer=zmws scenario={scenario}_w{}{} jobs_per_s={:.0} submit_jobs_per_s={:.0}{window} n={} payload={} {} {}",
        o.workers,
        o.suffix(),
        rate(o.n, t_end - t0),
        rate(o.n, t1 - t0),
        o.n,
        o.payload,
        b.cpu_key(cpu0, o.n),
        side_cpu_keys(Some(me0), &workers, o.n)
    );
    Ok(())
}

/// The peers' `tput_w4`: N serial `Client::submit`, each waiting for its id.
fn do_tput(o: &Opts) -> Res<()> {
    throughput(o, "tput", None, |c, buf| {
        for i in 0..o.n {
            c.submit(SERVICE, buf).map_err(|e| format!("submit {i}: {e}"))?;
        }
        Ok(())
    })
}

/// The peers' `pipe_w4`: async jobs submitted `window` at a time in one
/// `zmws.submit.batch` message each (one ack with the window's job ids),
/// completions counted by the workers.
fn do_pipe(o: &Opts) -> Res<()> {
    throughput(o, "pipe", Some(o.window as u64), |c, buf| {
        let window: Vec<&[u8]> = vec![buf; o.window];
        let mut left = o.n as usize;
        while left > 0 {
            let k = left.min(o.window);
            let ids = c.submit_batch(SERVICE, &window[..k]).map_err(|e| format!("submit_batch: {e}"))?;
            if ids.len() != k {
                return Err(format!("submit_batch: {} ids for {k} jobs", ids.len()));
            }
            left -= k;
        }
        Ok(())
    })
}

/// Experiment: N `zmws.call` jobs through one `Client::batch` (many in
/// flight, every result back at the client, so `submit_jobs_per_s` is when
/// every *result* is back).
fn do_pipecall(o: &Opts) -> Res<()> {
    throughput(o, "pipecall", Some(CLIENT_BATCH_WINDOW), |c, buf| {
        let payloads: Vec<&[u8]> = vec![buf; o.n as usize];
        let results = c.batch(SERVICE, &payloads, o.wait).map_err(|e| format!("batch: {e}"))?;
        match results.iter().enumerate().find(|(_, r)| r.is_err()) {
            Some((i, Err(e))) => Err(format!("batch job {i}: {e}")),
            _ => Ok(()),
        }
    })
}

fn do_filldrain(o: &Opts) -> Res<()> {
    let b = BrokerProc::start(o)?;
    let (_, idle_kb) = b.rss_kb()?;
    let mut c = connect(&b)?;
    // zmws refuses jobs for a service no worker ever offered (404), so one
    // worker registers the service and leaves (DISCONNECT) before the fill.
    {
        let w = Worker::connect(&b.worker_ep, SERVICE).map_err(|e| format!("probe worker: {e}"))?;
        wait_workers(&mut c, 1)?;
        w.close();
        wait_workers(&mut c, 0)?;
    }
    let buf = payload_bytes(o.payload);
    let cpu0 = b.cpu_ns();
    let t0 = now_ns();
    if o.batch_fill {
        let window: Vec<&[u8]> = vec![&buf[..]; o.window];
        let mut left = o.n as usize;
        while left > 0 {
            let k = left.min(o.window);
            c.submit_batch(SERVICE, &window[..k]).map_err(|e| format!("submit_batch: {e}"))?;
            left -= k;
        }
    } else {
        for i in 0..o.n {
            c.submit(SERVICE, &buf).map_err(|e| format!("submit {i}: {e}"))?;
        }
    }
    let t1 = now_ns();
    let fill_cpu = b.cpu_key(cpu0, o.n);
    let (hwm_kb, rss_kb) = b.rss_kb()?;
    let sfx = o.suffix().replace(&format!("_cap{}", o.capacity), "");
    let fill = format!(
        "peer=zmws scenario=fill{sfx} jobs_per_s={:.0} n={} payload={} {fill_cpu}",
        rate(o.n, t1 - t0),
        o.n,
        o.payload
    );
    let rss = format!(
        "peer=zmws scenario=rss_{}_queued{sfx} vmhwm_kb={hwm_kb} vmrss_kb={rss_kb} idle_vmrss_kb={idle_kb} bytes_per_job={}",
        o.n,
        (rss_kb.saturating_sub(idle_kb)) * 1024 / o.n
    );
    if o.quiet_fill {
        eprintln!("# {fill}\n# {rss}");
    } else {
        println!("{fill}\n{rss}");
    }
    if o.no_drain {
        return Ok(());
    }
    let ctr = Counter::create(o.n)?;
    let cpu1 = b.cpu_ns();
    let d0 = now_ns(); // includes starting the worker processes, as for the peers
    let _workers = Workers::spawn(o, &b.worker_ep, false, Some(&ctr))?;
    let t_end = ctr.wait(o.wait)?;
    println!(
        "peer=zmws scenario=drain_w{}{} jobs_per_s={:.0} n={} {} {}",
        o.workers,
        // how the backlog was filled does not change the drain
        o.suffix().replace("_batchfill", ""),
        rate(o.n, t_end - d0),
        o.n,
        b.cpu_key(cpu1, o.n),
        side_cpu_keys(None, &_workers, o.n)
    );
    Ok(())
}

//! Process control: `zmws start`, `zmws stop`, `zmws status` and the
//! per-worker `zmws supervise` process.
//!
//! * `start` runs every process detached (its own session, stdin closed,
//!   stdout and stderr appended to `logs/NAME.log`) and writes its pid to
//!   `run/NAME.pid`. The broker runs as `zmws broker --config FILE`; each
//!   worker instance runs under a `zmws supervise --pid-file run/NAME.pid`
//!   process that restarts it when it ends (exponential backoff, reset after
//!   a long enough run). The worker gets SIGTERM if its supervisor dies.
//! * `stop` sends SIGTERM (a supervisor gets the grace period with it, passes
//!   SIGTERM on to its worker, which finishes its current job), waits up to
//!   the grace period, then SIGKILLs the whole process group, so nothing is
//!   left behind. Workers stop before the broker so their last results still
//!   reach it.
//! * `status` prints each process with its pid, up or down, and for workers
//!   the service and the jobs done (from the broker's `zmws.workers`).
//!
//! A pid file is trusted only if its process is alive, not a zombie, and
//! provably this installation's: a zmws supervisor whose `--pid-file` is that
//! very file, or a zmws broker whose `--config` is this configuration file.
//! Anything else (a stale file, a reused pid, another program's pid file in a
//! shared `run_dir`) is never signalled.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::client::Client;
use crate::config::{Config, RestartPolicy};
use crate::error::{Error, Result};
use crate::job::WorkerInfo;

// ------------------------------------------------------------------ processes

/// What a pid file says about its process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidState {
    /// No pid file.
    Absent,
    /// The process runs and is this installation's.
    Running(i32),
    /// The pid file names a process that is gone.
    Stale(i32),
    /// The pid file names a live process this installation did not start
    /// (a reused pid, or another program's pid file).
    Foreign(i32),
}

/// Reads `NAME.pid`: a decimal pid, optionally followed by a newline.
pub fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse::<i32>().ok().filter(|p| *p > 1)
}

fn write_pid(path: &Path, pid: u32) -> io::Result<()> {
    let tmp = path.with_extension("pid.tmp");
    fs::write(&tmp, format!("{pid}\n"))?;
    fs::rename(&tmp, path)
}

/// Whether `pid` is a live process (zombies count as gone).
pub fn alive(pid: i32) -> bool {
    if pid <= 1 {
        return false;
    }
    // SAFETY: signal 0 only checks existence and permission.
    let r = unsafe { libc::kill(pid, 0) };
    if r != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EPERM) {
        return false;
    }
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z') | Some('X'))
        }
        // No stat: on Linux the process just went away; without /proc, trust kill(2).
        Err(_) => !have_proc(),
    }
}

fn have_proc() -> bool {
    Path::new("/proc/self").exists()
}

/// The arguments of `pid`, from `/proc/PID/cmdline`.
fn cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut args: Vec<String> = raw.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    if args.last().is_some_and(|a| a.is_empty()) {
        args.pop();
    }
    Some(args)
}

/// The value of `--flag VALUE` or `--flag=VALUE` among the options (before `--`).
fn option_value<'a>(args: &'a [String], flags: &[&str]) -> Option<&'a str> {
    let opts = args.iter().position(|a| a == "--").map_or(args, |end| &args[..end]);
    for (i, a) in opts.iter().enumerate() {
        for flag in flags {
            if a == flag {
                return opts.get(i + 1).map(String::as_str);
            }
            if let Some(v) = a.strip_prefix(flag).and_then(|rest| rest.strip_prefix('=')) {
                return Some(v);
            }
        }
    }
    None
}

/// Whether `named` (an argument of process `pid`, relative to its working
/// directory) is the file `path`.
fn same_file(pid: i32, named: &str, path: &Path) -> bool {
    let named = Path::new(named);
    let named = if named.is_absolute() {
        named.to_path_buf()
    } else {
        match fs::read_link(format!("/proc/{pid}/cwd")) {
            Ok(cwd) => cwd.join(named),
            Err(_) => return false,
        }
    };
    match (fs::canonicalize(&named), fs::canonicalize(path)) {
        (Ok(a), Ok(b)) => a == b,
        _ => named == path,
    }
}

/// Whether live process `pid` is the one this installation started for
/// `pid_file`: a `zmws supervise --pid-file PID_FILE --config CONFIG …` (a worker instance)
/// or a `zmws broker --config CONFIG` (the broker). Without `/proc` it
/// cannot tell and says yes.
fn is_ours(pid: i32, pid_file: &Path, kind: Kind, config: &Path) -> bool {
    let Some(args) = cmdline(pid) else { return !have_proc() };
    let exe = args.first().and_then(|a| Path::new(a).file_name()).and_then(|n| n.to_str()).unwrap_or("");
    if !exe.starts_with("zmws") {
        return false;
    }
    match kind {
        Kind::Worker => {
            // A supervisor names its configuration (`--config`, since
            // session 5; one started by an older zmws has none, and then
            // the pid file alone decides): another installation sharing the
            // run_dir is not ours.
            args.get(1).map(String::as_str) == Some("supervise")
                && option_value(&args, &["--pid-file"]).is_some_and(|f| same_file(pid, f, pid_file))
                && option_value(&args, &["--config"]).is_none_or(|f| same_file(pid, f, config))
        }
        Kind::Broker => {
            args.get(1).map(String::as_str) == Some("broker")
                && option_value(&args, &["--config", "-c"]).is_some_and(|f| same_file(pid, f, config))
        }
    }
}

/// The state of the process behind a pid file that `kind` of this
/// installation (configuration file `config`) would have written.
pub fn pid_state(path: &Path, kind: Kind, config: &Path) -> PidState {
    match read_pid(path) {
        None => PidState::Absent,
        Some(pid) if !alive(pid) => PidState::Stale(pid),
        Some(pid) if is_ours(pid, path, kind, config) => PidState::Running(pid),
        Some(pid) => PidState::Foreign(pid),
    }
}

/// Why a pid file is not trusted, for messages: `PID 4242 is not running`.
fn untrusted_reason(state: PidState) -> Option<String> {
    match state {
        PidState::Stale(pid) => Some(format!("PID {pid} is not running")),
        PidState::Foreign(pid) => Some(format!("PID {pid} is not a process of this installation")),
        PidState::Absent | PidState::Running(_) => None,
    }
}

fn signal(pid: i32, sig: libc::c_int) -> bool {
    // SAFETY: plain kill(2) on a pid we verified; negative pids address a group.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// SIGTERM carrying `grace` (ms) for a supervisor (`sigqueue`); a plain
/// SIGTERM if that fails.
fn signal_stop_with_grace(pid: i32, grace: Duration) -> bool {
    let ms = usize::try_from(grace.as_millis()).unwrap_or(usize::MAX);
    let value = libc::sigval { sival_ptr: ms as *mut libc::c_void };
    // SAFETY: sigqueue(3) on a pid we verified; the value is a plain integer.
    unsafe { libc::sigqueue(pid, libc::SIGTERM, value) == 0 || signal(pid, libc::SIGTERM) }
}

/// Whether any process is left in process group `pgid`.
fn group_alive(pgid: i32) -> bool {
    pgid > 1 && signal(-pgid, 0) && group_members(pgid).map(|m| !m.is_empty()).unwrap_or(true)
}

/// Live (non-zombie) members of a process group, from `/proc`.
fn group_members(pgid: i32) -> Option<Vec<i32>> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").ok()? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // fields[0] = state, [1] = ppid, [2] = pgrp
        if fields.len() > 2 && fields[2].parse::<i32>().ok() == Some(pgid) && fields[0] != "Z" && fields[0] != "X" {
            out.push(pid);
        }
    }
    Some(out)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for log headers.
pub fn utc_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (proleptic Gregorian), after H. Hinnant.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn io_err(what: impl std::fmt::Display, e: io::Error) -> Error {
    Error::Io(format!("{what}: {e}"))
}

fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn last_lines(path: &Path, n: usize) -> Vec<String> {
    let Ok(f) = fs::File::open(path) else { return Vec::new() };
    let lines: Vec<String> = io::BufReader::new(f).lines().map_while(|l| l.ok()).collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

// ------------------------------------------------------------------ plan

/// Whether a process is the broker or a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `zmws broker -c FILE`.
    Broker,
    /// A `zmws supervise` process running one worker instance.
    Worker,
}

/// One process `start` runs.
#[derive(Debug, Clone)]
pub struct ProcSpec {
    /// Process name (pid and log file names).
    pub name: String,
    /// Broker or worker.
    pub kind: Kind,
    /// What runs (for workers: the supervisor and, after `--`, the worker).
    pub argv: Vec<String>,
    /// The worker's own command line (for messages).
    pub command: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: PathBuf,
    /// `run/NAME.pid`.
    pub pid_file: PathBuf,
    /// `logs/NAME.log`.
    pub log_file: PathBuf,
    /// For workers: the service, when known.
    pub service: Option<String>,
}

fn exe() -> Result<String> {
    let p = std::env::current_exe().map_err(|e| io_err("cannot find the zmws executable", e))?;
    Ok(p.to_string_lossy().into_owned())
}

/// The broker process of a configuration (`None` when `[broker] enabled = false`).
pub fn broker_spec(cfg: &Config) -> Result<Option<ProcSpec>> {
    if !cfg.broker.enabled {
        return Ok(None);
    }
    let name = cfg.broker.name.clone();
    let argv = vec![exe()?, "broker".into(), "--config".into(), cfg.path.to_string_lossy().into_owned()];
    Ok(Some(ProcSpec {
        pid_file: cfg.process.run_dir.join(format!("{name}.pid")),
        log_file: cfg.process.log_dir.join(format!("{name}.log")),
        name,
        kind: Kind::Broker,
        command: argv.clone(),
        argv,
        env: Vec::new(),
        cwd: cfg.root.clone(),
        service: None,
    }))
}

/// Every worker instance of a configuration, in file order.
pub fn worker_specs(cfg: &Config) -> Result<Vec<ProcSpec>> {
    let exe = exe()?;
    let p = &cfg.process;
    let mut out = Vec::new();
    for w in &cfg.workers {
        for name in w.instance_names() {
            let pid_file = p.run_dir.join(format!("{name}.pid"));
            let mut argv = vec![
                exe.clone(),
                "supervise".into(),
                "--name".into(),
                name.clone(),
                "--pid-file".into(),
                pid_file.to_string_lossy().into_owned(),
                "--config".into(),
                cfg.path.to_string_lossy().into_owned(),
                "--grace-ms".into(),
                p.stop_grace_ms.to_string(),
                "--restart".into(),
                w.restart.as_str().into(),
                "--restart-delay-ms".into(),
                p.restart_delay_ms.to_string(),
                "--restart-max-delay-ms".into(),
                p.restart_max_delay_ms.to_string(),
                "--restart-reset-ms".into(),
                p.restart_reset_ms.to_string(),
                "--".into(),
            ];
            argv.extend(w.argv.iter().cloned());
            let mut env = vec![
                ("ZMWS_WORKER_ENDPOINT".to_string(), w.broker.clone()),
                ("ZMWS_BROKER".to_string(), cfg.client_endpoint()),
                ("ZMWS_WORKER_NAME".to_string(), name.clone()),
                ("ZMWS_HEARTBEAT_MS".to_string(), cfg.broker.engine.heartbeat_ms.to_string()),
            ];
            if let Some(s) = &w.service {
                env.push(("ZMWS_SERVICE".to_string(), s.clone()));
            }
            env.extend(w.env.iter().cloned());
            out.push(ProcSpec {
                log_file: p.log_dir.join(format!("{name}.log")),
                pid_file,
                name,
                kind: Kind::Worker,
                argv,
                command: w.argv.clone(),
                env,
                cwd: w.cwd.clone(),
                service: w.service.clone(),
            });
        }
    }
    Ok(out)
}

fn spawn_detached(spec: &ProcSpec) -> Result<Child> {
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log_file)
        .map_err(|e| io_err(format!("cannot open {}", spec.log_file.display()), e))?;
    let _ = writeln!(log, "==== {} zmws start: {}: {}", utc_now(), spec.name, shell_words(&spec.command));
    let err = log.try_clone().map_err(|e| io_err("log file", e))?;
    let mut cmd = Command::new(&spec.argv[0]);
    cmd.args(&spec.argv[1..])
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err))
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    // SAFETY: setsid is async-signal-safe; it runs in the forked child only.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| io_err(format!("cannot start {} ({})", spec.name, spec.argv[0]), e))
}

/// Checks an existing pid file before starting: `Some(pid)` when the process
/// already runs; removes a stale file (saying so).
fn check_existing(spec: &ProcSpec, config: &Path, out: &mut dyn Write) -> Option<i32> {
    let state = pid_state(&spec.pid_file, spec.kind, config);
    if let PidState::Running(pid) = state {
        let _ = writeln!(out, "{} already running (PID {pid})", spec.name);
        return Some(pid);
    }
    if let Some(why) = untrusted_reason(state) {
        // The file is this configuration's own (its name and place): whatever
        // it names now is not the process `start` left there.
        let _ = writeln!(out, "removing stale pid file {} ({why})", spec.pid_file.display());
        remove_pid_file(&spec.pid_file);
    }
    None
}

/// A quick TCP probe of a `tcp://host:port` endpoint (other transports: yes).
fn reachable(endpoint: &str) -> bool {
    let Some(addr) = endpoint.strip_prefix("tcp://") else { return true };
    match std::net::ToSocketAddrs::to_socket_addrs(addr) {
        Ok(mut it) => it.any(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok()),
        Err(_) => false,
    }
}

/// A client for the configured broker, if it accepts connections.
fn client(cfg: &Config, timeout: Duration) -> Option<Client> {
    if !reachable(&cfg.client_endpoint()) {
        return None;
    }
    let mut c = Client::connect(&cfg.client_endpoint()).ok()?;
    c.set_request_timeout(timeout);
    Some(c)
}

fn broker_workers(cfg: &Config, timeout: Duration) -> Option<Vec<WorkerInfo>> {
    client(cfg, timeout)?.workers().ok()
}

fn http_url(cfg: &Config) -> String {
    format!("http://{}", cfg.http.endpoint.trim_start_matches("http://"))
}

// ------------------------------------------------------------------ start

/// `zmws start`: starts the broker (`servers`) and the workers (`workers`)
/// that are not running yet. Returns whether everything is up. A broker that
/// exits at once ends `start` there: no worker is started.
pub fn start(cfg: &Config, servers: bool, workers: bool, out: &mut dyn Write) -> Result<bool> {
    let p = &cfg.process;
    for dir in [&p.run_dir, &p.log_dir] {
        fs::create_dir_all(dir).map_err(|e| io_err(format!("cannot create {}", dir.display()), e))?;
    }
    if servers && cfg.broker.enabled && cfg.broker.persist {
        let d = &cfg.broker.data_dir;
        fs::create_dir_all(d).map_err(|e| io_err(format!("cannot create {}", d.display()), e))?;
    }
    let timeout = Duration::from_millis(p.start_timeout_ms);
    let mut ok = true;

    if servers {
        match broker_spec(cfg)? {
            None => {
                let _ = writeln!(out, "no broker to start ([broker] enabled = false)");
            }
            Some(spec) => {
                if check_existing(&spec, &cfg.path, out).is_none() {
                    let taken = endpoints_in_use(cfg);
                    let mut child = spawn_detached(&spec)?;
                    let pid = child.id();
                    write_pid(&spec.pid_file, pid)
                        .map_err(|e| io_err(format!("cannot write {}", spec.pid_file.display()), e))?;
                    let _ = writeln!(out, "started {} (PID {pid}), log {}", spec.name, spec.log_file.display());
                    match wait_broker_ready(cfg, &mut child, &spec, &taken, timeout, out) {
                        BrokerStart::Ready => {}
                        BrokerStart::Slow => ok = false,
                        BrokerStart::Exited => {
                            if workers && !cfg.workers.is_empty() {
                                let _ = writeln!(out, "not starting the workers: {} is not running", spec.name);
                            }
                            return Ok(false);
                        }
                    }
                }
            }
        }
    }

    if workers {
        let specs = worker_specs(cfg)?;
        if specs.is_empty() {
            let _ = writeln!(out, "no [[worker]] entries in {}", cfg.path.display());
        }
        let mut started: Vec<(ProcSpec, Child)> = Vec::new();
        for spec in specs.iter() {
            if check_existing(spec, &cfg.path, out).is_some() {
                continue;
            }
            let child = spawn_detached(spec)?;
            let pid = child.id();
            write_pid(&spec.pid_file, pid)
                .map_err(|e| io_err(format!("cannot write {}", spec.pid_file.display()), e))?;
            let _ = writeln!(out, "started {} (PID {pid}): {}", spec.name, shell_words(&spec.command));
            started.push((spec.clone(), child));
        }
        if !started.is_empty() && !wait_workers_ready(cfg, &mut started, &specs, timeout, out) {
            ok = false;
        }
    }
    Ok(ok)
}

/// How the broker `start` just ran came up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BrokerStart {
    /// It answers on its client endpoint (and its HTTP port accepts).
    Ready,
    /// It runs but did not answer within the start timeout.
    Slow,
    /// It exited (port in use, bad data directory, …).
    Exited,
}

/// The broker's endpoints that already accept connections before it runs:
/// whatever answers there is another program, not the broker `start` runs.
fn endpoints_in_use(cfg: &Config) -> Vec<String> {
    let mut taken = Vec::new();
    let client = cfg.client_endpoint();
    if client.starts_with("tcp://") && reachable(&client) {
        taken.push(client);
    }
    if cfg.http.enabled {
        if let Ok(addr) = crate::config::parse_listen(&cfg.http.endpoint) {
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok() {
                taken.push(http_url(cfg));
            }
        }
    }
    taken
}

/// Waits until the broker just started answers (not trusting endpoints that
/// were `taken` before it started), exits, or `timeout` passes.
fn wait_broker_ready(
    cfg: &Config,
    child: &mut Child,
    spec: &ProcSpec,
    taken: &[String],
    timeout: Duration,
    out: &mut dyn Write,
) -> BrokerStart {
    let deadline = Instant::now() + timeout;
    let http = cfg.http.enabled.then(|| crate::config::parse_listen(&cfg.http.endpoint).ok()).flatten();
    let mut zmq_ok = false;
    let mut c = None;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let _ = writeln!(
                out,
                "{} exited at once ({}); last lines of {}:",
                spec.name,
                describe(status),
                spec.log_file.display()
            );
            for l in last_lines(&spec.log_file, 8) {
                let _ = writeln!(out, "    {l}");
            }
            remove_pid_file(&spec.pid_file);
            return BrokerStart::Exited;
        }
        if !zmq_ok {
            if c.is_none() {
                c = client(cfg, Duration::from_millis(250));
            }
            zmq_ok = c.as_mut().map(|c| c.services_json().is_ok()).unwrap_or(false);
        }
        let http_ok = match http {
            None => true,
            Some(addr) => std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok(),
        };
        if zmq_ok && http_ok && taken.is_empty() {
            let mut line = format!("{} ready: clients {}", spec.name, cfg.client_endpoint());
            if cfg.http.enabled {
                line.push_str(&format!(", http {}", http_url(cfg)));
            }
            let _ = writeln!(out, "{line}");
            return BrokerStart::Ready;
        }
        if Instant::now() >= deadline {
            if taken.is_empty() {
                let _ = writeln!(
                    out,
                    "warning: {} runs but did not answer within {} ms (see {})",
                    spec.name,
                    timeout.as_millis(),
                    spec.log_file.display()
                );
            } else {
                let _ = writeln!(
                    out,
                    "warning: {} runs, but another program already answered on {} before it started (see {})",
                    spec.name,
                    taken.join(" and "),
                    spec.log_file.display()
                );
            }
            return BrokerStart::Slow;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How many instances of each service the configuration runs; instances whose
/// service is unknown are under `None`.
fn expected_per_service(specs: &[ProcSpec]) -> BTreeMap<Option<String>, usize> {
    let mut want: BTreeMap<Option<String>, usize> = BTreeMap::new();
    for spec in specs {
        *want.entry(spec.service.clone()).or_default() += 1;
    }
    want
}

/// How many of the expected workers the broker lists: per service of this
/// configuration at most the instances it runs (so other installations'
/// workers and leftovers do not count twice); for instances of unknown
/// service, workers of services the configuration does not name.
fn registered_count(listed: &[WorkerInfo], want: &BTreeMap<Option<String>, usize>) -> usize {
    let mut live: BTreeMap<Option<String>, usize> = BTreeMap::new();
    for w in listed {
        let key = Some(w.service.clone());
        let key = if want.contains_key(&key) { key } else { None };
        *live.entry(key).or_default() += 1;
    }
    want.iter().map(|(service, n)| live.get(service).copied().unwrap_or(0).min(*n)).sum()
}

fn wait_workers_ready(
    cfg: &Config,
    started: &mut [(ProcSpec, Child)],
    specs: &[ProcSpec],
    timeout: Duration,
    out: &mut dyn Write,
) -> bool {
    let deadline = Instant::now() + timeout;
    let want = expected_per_service(specs);
    let expected = specs.len();
    let mut c = None;
    let mut live = 0usize;
    loop {
        if c.is_none() {
            c = client(cfg, Duration::from_millis(500));
        }
        let mut dead = Vec::new();
        for (spec, child) in started.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                dead.push((spec.clone(), status));
            }
        }
        if !dead.is_empty() {
            for (spec, status) in dead {
                let _ = writeln!(
                    out,
                    "{} exited at once ({}); see {}",
                    spec.name,
                    describe(status),
                    spec.log_file.display()
                );
                remove_pid_file(&spec.pid_file);
            }
            return false;
        }
        if let Some(ws) = c.as_mut().and_then(|c| c.workers().ok()) {
            live = registered_count(&ws, &want);
            if live >= expected {
                let _ = writeln!(out, "{live} worker(s) registered with the broker");
                return true;
            }
        }
        if Instant::now() >= deadline {
            let logs = cfg.process.log_dir.display();
            if c.is_none() || live == 0 && broker_workers(cfg, Duration::from_millis(300)).is_none() {
                let _ = writeln!(
                    out,
                    "warning: the broker at {} did not answer; workers will connect when it runs",
                    cfg.client_endpoint()
                );
            } else {
                let _ = writeln!(
                    out,
                    "warning: only {live} of {expected} worker(s) registered with the broker after {} ms (see {logs}/)",
                    timeout.as_millis()
                );
                // The workers whose program already ended (and is being
                // restarted) are the likely culprits: show why.
                for (spec, _) in started.iter() {
                    let Some(r) = RestartRecord::read(&spec.pid_file) else { continue };
                    let Some(how) = r.last_exit.as_deref().filter(|_| r.last_failed) else { continue };
                    let _ = writeln!(
                        out,
                        "{}: its worker ended ({how}) and is being restarted; last lines of {}:",
                        spec.name,
                        spec.log_file.display()
                    );
                    for l in last_lines(&spec.log_file, 4) {
                        let _ = writeln!(out, "    {l}");
                    }
                }
            }
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => status.to_string(),
    }
}

// ------------------------------------------------------------------ stop

struct Target {
    name: String,
    pid_file: PathBuf,
    pid: i32,
}

/// Pid files in the run directory left by worker instances that are no longer
/// in the configuration (count lowered, entry deleted) and whose process is
/// still running: (name, pid file, pid). Only files whose process proves to
/// be this installation's supervisor for that very file are listed; any other
/// `*.pid` (another program's, in a shared `run_dir`) is left alone.
fn leftover_workers(cfg: &Config) -> Vec<(String, PathBuf, i32)> {
    let mut known: Vec<PathBuf> = worker_specs(cfg).unwrap_or_default().into_iter().map(|s| s.pid_file).collect();
    known.push(cfg.process.run_dir.join(format!("{}.pid", cfg.broker.name)));
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(&cfg.process.run_dir) else { return out };
    for e in rd.flatten() {
        let path = e.path();
        if path.extension().and_then(|x| x.to_str()) != Some("pid") || known.contains(&path) {
            continue;
        }
        let Some(name) = path.file_stem().and_then(|s| s.to_str()).map(str::to_string) else { continue };
        if let PidState::Running(pid) = pid_state(&path, Kind::Worker, &cfg.path) {
            out.push((name, path, pid));
        }
    }
    out.sort();
    out
}

/// The running processes behind this configuration's own pid files; stale
/// files (or files naming another program now) are reported and removed.
fn collect_targets(list: &[(String, PathBuf)], kind: Kind, config: &Path, out: &mut dyn Write) -> Vec<Target> {
    let mut targets = Vec::new();
    for (name, pid_file) in list {
        let state = pid_state(pid_file, kind, config);
        if let PidState::Running(pid) = state {
            targets.push(Target { name: name.clone(), pid_file: pid_file.clone(), pid });
        } else if let Some(why) = untrusted_reason(state) {
            let _ = writeln!(out, "{name} is not running (removing stale pid file {}: {why})", pid_file.display());
            remove_pid_file(pid_file);
        }
    }
    targets
}

/// SIGTERM (for supervisors, carrying `grace`: `tell_grace`), wait up to
/// `wait`, SIGKILL the process groups of what is left.
fn stop_group(targets: Vec<Target>, grace: Duration, wait: Duration, tell_grace: bool, out: &mut dyn Write) {
    for t in &targets {
        let _ = writeln!(out, "stopping {} (PID {})", t.name, t.pid);
        if tell_grace {
            signal_stop_with_grace(t.pid, grace);
        } else {
            signal(t.pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + wait;
    let mut left: Vec<&Target> = targets.iter().collect();
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        left.retain(|t| alive(t.pid));
    }
    for t in &left {
        let _ = writeln!(out, "{} did not stop within {} ms: sending SIGKILL", t.name, wait.as_millis());
        signal(-t.pid, libc::SIGKILL);
        signal(t.pid, libc::SIGKILL);
    }
    let kill_deadline = Instant::now() + Duration::from_secs(5);
    for t in &targets {
        // Whatever the process left in its group (a job's child, a worker
        // that outlived its supervisor) goes too.
        while (alive(t.pid) || group_alive(t.pid)) && Instant::now() < kill_deadline {
            signal(-t.pid, libc::SIGKILL);
            std::thread::sleep(Duration::from_millis(20));
        }
        if alive(t.pid) {
            let _ = writeln!(out, "{} (PID {}) is still running", t.name, t.pid);
        } else {
            remove_pid_file(&t.pid_file);
            let _ = writeln!(out, "{} stopped", t.name);
        }
    }
}

/// `zmws stop`: workers first (each supervisor gives its worker `grace`, or
/// `stop_grace_ms`, to finish its current job), then the broker.
pub fn stop(cfg: &Config, servers: bool, workers: bool, grace: Option<Duration>, out: &mut dyn Write) -> Result<()> {
    let grace = grace.unwrap_or(Duration::from_millis(cfg.process.stop_grace_ms));
    if workers {
        let own: Vec<(String, PathBuf)> = worker_specs(cfg)?.into_iter().map(|s| (s.name, s.pid_file)).collect();
        let mut targets = collect_targets(&own, Kind::Worker, &cfg.path, out);
        for (name, pid_file, pid) in leftover_workers(cfg) {
            targets.push(Target { name, pid_file, pid });
        }
        if targets.is_empty() {
            let _ = writeln!(out, "no worker is running");
        } else {
            // Supervisors give their worker `grace` themselves; allow a margin.
            stop_group(targets, grace, grace + Duration::from_secs(2), true, out);
        }
    }
    if servers {
        let name = cfg.broker.name.clone();
        let pid_file = cfg.process.run_dir.join(format!("{name}.pid"));
        let targets = collect_targets(&[(name.clone(), pid_file)], Kind::Broker, &cfg.path, out);
        if targets.is_empty() {
            let _ = writeln!(out, "{name} is not running");
        } else {
            stop_group(targets, grace, grace, false, out);
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ status

/// `zmws status`: one line per process. Returns whether all are up.
pub fn status(cfg: &Config, servers: bool, workers: bool, out: &mut dyn Write) -> Result<bool> {
    let mut all_up = true;
    let mut rows: Vec<[String; 4]> = Vec::new();
    let mut note = None;
    if servers {
        if let Some(spec) = broker_spec(cfg)? {
            let (pid, state, mut detail) = describe_pid(&spec.pid_file, Kind::Broker, &cfg.path);
            all_up &= state == "up";
            if state == "up" {
                let answered =
                    client(cfg, Duration::from_millis(1000)).map(|mut c| c.services_json().is_ok()).unwrap_or(false);
                detail = format!(
                    "clients {}{}{}",
                    cfg.client_endpoint(),
                    if cfg.http.enabled { format!(", http {}", http_url(cfg)) } else { String::new() },
                    if answered { "" } else { " (not answering)" }
                );
            }
            rows.push([spec.name, pid, state.into(), detail]);
        }
    }
    if workers {
        let specs = worker_specs(cfg)?;
        let listed = if specs.is_empty() { None } else { broker_workers(cfg, Duration::from_millis(1000)) };
        for spec in &specs {
            let (pid, mut state, stale) = describe_pid(&spec.pid_file, Kind::Worker, &cfg.path);
            // A supervisor that is up but whose worker keeps ending is
            // crash-looping: say so, and do not count it as up.
            let restarts = (state == "up")
                .then(|| RestartRecord::read(&spec.pid_file))
                .flatten()
                .and_then(|r| r.recent_restarts(unix_ms()));
            if restarts.is_some() {
                state = "restarting";
            }
            all_up &= state == "up";
            let mut detail = match &spec.service {
                Some(s) => {
                    let mut d = format!("service {s}");
                    if let Some(ws) = &listed {
                        let mine: Vec<&WorkerInfo> = ws.iter().filter(|w| &w.service == s).collect();
                        let done: u64 = mine.iter().map(|w| w.jobs_done).sum();
                        let busy = mine.iter().filter(|w| w.state == "busy").count();
                        d.push_str(&format!(", {} live ({busy} busy), {done} job(s) done", mine.len()));
                    }
                    d
                }
                None => "service unknown (set `service` in [[worker]])".into(),
            };
            if !stale.is_empty() {
                detail = format!("{detail}; {stale}");
            }
            if let Some(r) = restarts {
                detail = format!("{detail}; {r} (see {}/{}.log)", cfg.process.log_dir.display(), spec.name);
            }
            rows.push([spec.name.clone(), pid, state.into(), detail]);
        }
        // Leftovers run but are not expected: they do not change the exit status.
        for (name, _, pid) in leftover_workers(cfg) {
            rows.push([
                name,
                pid.to_string(),
                "up".into(),
                "not in the configuration any more (zmws stop ends it)".into(),
            ]);
        }
        if listed.is_none() && !specs.is_empty() {
            note = Some(format!("the broker at {} did not answer: jobs done unknown", cfg.client_endpoint()));
        }
    }
    let w0 = rows.iter().map(|r| r[0].len()).max().unwrap_or(4).max(4);
    let w1 = rows.iter().map(|r| r[1].len()).max().unwrap_or(3).max(3);
    let w2 = rows.iter().map(|r| r[2].len()).max().unwrap_or(5).max(5);
    let _ = writeln!(out, "{:w0$}  {:w1$}  {:w2$}  DETAILS", "NAME", "PID", "STATE");
    for r in rows {
        let line = format!("{:w0$}  {:w1$}  {:w2$}  {}", r[0], r[1], r[2], r[3]);
        let _ = writeln!(out, "{}", line.trim_end());
    }
    if let Some(n) = note {
        let _ = writeln!(out, "note: {n}");
    }
    Ok(all_up)
}

fn describe_pid(pid_file: &Path, kind: Kind, config: &Path) -> (String, &'static str, String) {
    let state = pid_state(pid_file, kind, config);
    match state {
        PidState::Running(pid) => (pid.to_string(), "up", String::new()),
        PidState::Absent => ("-".into(), "down", String::new()),
        PidState::Stale(_) | PidState::Foreign(_) => {
            let why = untrusted_reason(state).unwrap_or_default();
            ("-".into(), "down", format!("stale pid file {} ({why})", pid_file.display()))
        }
    }
}

// ------------------------------------------------------------------ supervise

/// What a supervisor tells `zmws status` about its worker's restarts, in
/// `run/NAME.state` beside its pid file: lines of `key value`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RestartRecord {
    /// Times the worker was started (1 for a worker that never ended).
    pub runs: u64,
    /// How the worker last ended ("exit status 1"), if it ever did.
    pub last_exit: Option<String>,
    /// When it last ended (Unix ms).
    pub last_exit_ms: Option<u64>,
    /// Whether that end was a failure (not exit status 0): a worker that
    /// ends cleanly now and then (recycling itself) is not crash-looping.
    pub last_failed: bool,
}

/// A worker that ended within this time before `status` is reported as
/// restarting (crash-looping) rather than up.
pub const RECENT_RESTART: Duration = Duration::from_secs(60);

impl RestartRecord {
    /// The record file of the supervisor whose pid file is `pid_file`.
    pub fn path(pid_file: &Path) -> PathBuf {
        pid_file.with_extension("state")
    }

    fn write(&self, pid_file: &Path) {
        let mut text = format!("runs {}\n", self.runs);
        if let (Some(how), Some(at)) = (&self.last_exit, self.last_exit_ms) {
            text.push_str(&format!("last_exit {how}\nlast_exit_ms {at}\nlast_failed {}\n", self.last_failed as u8));
        }
        // Best effort: status only loses the restart detail without it.
        let path = Self::path(pid_file);
        let tmp = path.with_extension("state.tmp");
        if fs::write(&tmp, text).is_ok() {
            let _ = fs::rename(&tmp, &path);
        }
    }

    /// Reads the record beside `pid_file`; None if there is none.
    pub fn read(pid_file: &Path) -> Option<RestartRecord> {
        let text = fs::read_to_string(Self::path(pid_file)).ok()?;
        let mut r = RestartRecord::default();
        for line in text.lines() {
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            match k {
                "runs" => r.runs = v.parse().ok()?,
                "last_exit" => r.last_exit = Some(v.to_string()),
                "last_exit_ms" => r.last_exit_ms = v.parse().ok(),
                "last_failed" => r.last_failed = v == "1",
                _ => {}
            }
        }
        Some(r)
    }

    /// "3 restart(s), last ended (exit status 1) 4 s ago" when the worker
    /// failed within [`RECENT_RESTART`]; None otherwise.
    pub fn recent_restarts(&self, now_ms: u64) -> Option<String> {
        if !self.last_failed {
            return None;
        }
        let at = self.last_exit_ms?;
        let ago = now_ms.saturating_sub(at);
        if ago > RECENT_RESTART.as_millis() as u64 {
            return None;
        }
        Some(format!(
            "{} restart(s), last ended ({}) {} s ago",
            self.runs.saturating_sub(1),
            self.last_exit.as_deref().unwrap_or("?"),
            ago / 1000
        ))
    }
}

/// Removes a pid file and the supervisor's restart record beside it.
fn remove_pid_file(pid_file: &Path) {
    let _ = fs::remove_file(pid_file);
    let _ = fs::remove_file(RestartRecord::path(pid_file));
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Options of `zmws supervise`.
#[derive(Debug, Clone)]
pub struct SuperviseOptions {
    /// Instance name (for messages).
    pub name: String,
    /// Pid file to remove when the supervisor ends on its own.
    pub pid_file: Option<PathBuf>,
    /// Time the worker gets to finish after SIGTERM before SIGKILL.
    pub grace: Duration,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// First restart delay.
    pub delay: Duration,
    /// Largest restart delay.
    pub max_delay: Duration,
    /// Run time after which the delay goes back to the first one.
    pub reset_after: Duration,
    /// The worker's command line.
    pub argv: Vec<String>,
}

static SUPERVISOR_STOP: AtomicBool = AtomicBool::new(false);

/// The grace period (ms) `zmws stop --grace-ms` sent with its SIGTERM
/// (`sigqueue`); `u64::MAX` when none came.
static GRACE_FROM_STOP_MS: AtomicU64 = AtomicU64::new(u64::MAX);

extern "C" fn on_stop_signal(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo_t; a
    // sigqueue(3) sender (si_code SI_QUEUE) filled si_value. Only atomics are
    // touched (async-signal-safe).
    unsafe {
        if !info.is_null() && (*info).si_code == libc::SI_QUEUE {
            GRACE_FROM_STOP_MS.store((*info).si_value().sival_ptr as usize as u64, Ordering::SeqCst);
        }
    }
    SUPERVISOR_STOP.store(true, Ordering::SeqCst);
}

/// Installs `on_stop_signal` for SIGTERM and SIGINT.
fn install_stop_handler() -> Result<()> {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction is valid; the handler is async-signal-safe.
        let r = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop_signal as *const () as libc::sighandler_t;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if r != 0 {
            return Err(io_err("cannot install the supervisor's signal handler", io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// The grace period to give the worker: the one `zmws stop` sent, else ours.
fn stop_grace(default: Duration) -> Duration {
    match GRACE_FROM_STOP_MS.load(Ordering::SeqCst) {
        u64::MAX => default,
        ms => Duration::from_millis(ms),
    }
}

/// Starts the worker command. It gets SIGTERM when the supervisor dies
/// (`PR_SET_PDEATHSIG`), so a killed supervisor leaves no orphan behind.
fn spawn_worker(argv: &[String]) -> io::Result<Child> {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).stdin(Stdio::null());
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getpid/prctl/getppid are async-signal-safe; the closure runs
        // in the forked child only.
        let supervisor = unsafe { libc::getpid() };
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The supervisor died before prctl took effect: do not run.
                if libc::getppid() != supervisor {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }
    cmd.spawn()
}

fn sleep_unless_stopped(d: Duration) {
    let end = Instant::now() + d;
    while !SUPERVISOR_STOP.load(Ordering::SeqCst) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50).min(end.saturating_duration_since(Instant::now())));
    }
}

/// Runs `argv`, restarting it when it ends, until SIGTERM/SIGINT; then passes
/// SIGTERM on, waits up to the grace period, SIGKILLs. Returns the exit code.
pub fn supervise(opts: SuperviseOptions) -> Result<i32> {
    if opts.argv.is_empty() {
        return Err(Error::InvalidArgument("supervise needs a command after --".into()));
    }
    install_stop_handler()?;
    let name = &opts.name;
    let mut delay = opts.delay;
    let mut runs = 0u64;
    let mut record = RestartRecord::default();
    let code = loop {
        if SUPERVISOR_STOP.load(Ordering::SeqCst) {
            break 0;
        }
        runs += 1;
        let started = Instant::now();
        let spawned = spawn_worker(&opts.argv);
        let mut child = match spawned {
            Ok(c) => {
                tracing::info!(worker = %name, pid = c.id(), run = runs, "worker started: {}", shell_words(&opts.argv));
                record.runs = runs;
                if let Some(pf) = &opts.pid_file {
                    record.write(pf);
                }
                c
            }
            Err(e) => {
                tracing::error!(worker = %name, "cannot start {}: {e}; retrying in {} ms", opts.argv[0], delay.as_millis());
                record.runs = runs;
                record.last_exit = Some(format!("cannot start: {e}"));
                record.last_exit_ms = Some(unix_ms());
                record.last_failed = true;
                if let Some(pf) = &opts.pid_file {
                    record.write(pf);
                }
                sleep_unless_stopped(delay);
                delay = (delay * 2).min(opts.max_delay);
                continue;
            }
        };
        let status = loop {
            if SUPERVISOR_STOP.load(Ordering::SeqCst) {
                break None;
            }
            match child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => {
                    tracing::error!(worker = %name, "cannot wait for the worker: {e}");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        };
        let Some(status) = status else {
            // Stop asked: let the worker finish its current job.
            let pid = child.id() as i32;
            let grace = stop_grace(opts.grace);
            tracing::info!(worker = %name, pid, grace_ms = grace.as_millis() as u64, "stopping the worker (SIGTERM)");
            signal(pid, libc::SIGTERM);
            let deadline = Instant::now() + grace;
            let mut ended = None;
            while Instant::now() < deadline {
                if let Ok(Some(s)) = child.try_wait() {
                    ended = Some(s);
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            match ended {
                Some(s) => tracing::info!(worker = %name, "worker stopped ({})", describe(s)),
                None => {
                    tracing::warn!(worker = %name, "worker did not stop within {} ms: SIGKILL", grace.as_millis());
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
            break 0;
        };
        let ran = started.elapsed();
        record.last_exit = Some(describe(status));
        record.last_exit_ms = Some(unix_ms());
        record.last_failed = !status.success();
        if let Some(pf) = &opts.pid_file {
            record.write(pf);
        }
        let restart = match opts.restart {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => !status.success(),
            RestartPolicy::Never => false,
        };
        if !restart {
            tracing::info!(worker = %name, "worker ended ({}) after {} ms; restart policy {}: not restarting", describe(status), ran.as_millis(), opts.restart.as_str());
            break status.code().unwrap_or(1);
        }
        if ran >= opts.reset_after {
            delay = opts.delay;
        }
        tracing::warn!(worker = %name, "worker ended ({}) after {} ms; restarting in {} ms", describe(status), ran.as_millis(), delay.as_millis());
        sleep_unless_stopped(delay);
        delay = (delay * 2).min(opts.max_delay);
    };
    if let Some(pf) = &opts.pid_file {
        match read_pid(pf) {
            Some(pid) if pid == std::process::id() as i32 => remove_pid_file(pf),
            // Ended before `start` wrote the pid file: only the record is ours.
            None => {
                let _ = fs::remove_file(RestartRecord::path(pf));
            }
            Some(_) => {}
        }
    }
    tracing::info!(worker = %name, "supervisor exiting");
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_format() {
        let s = utc_now();
        assert_eq!(s.len(), 20, "{s}");
        assert!(s.starts_with("20") && s.ends_with('Z'));
    }

    #[test]
    fn options_are_found_before_the_command() {
        let args: Vec<String> =
            ["zmws", "supervise", "--pid-file", "/r/a.pid", "--", "x", "--pid-file=/r/b.pid"].map(String::from).into();
        assert_eq!(option_value(&args, &["--pid-file"]), Some("/r/a.pid"));
        let args: Vec<String> = ["zmws", "broker", "--config=/c.toml"].map(String::from).into();
        assert_eq!(option_value(&args, &["--config", "-c"]), Some("/c.toml"));
        let args: Vec<String> = ["zmws", "worker", "--", "--pid-file", "/r/a.pid"].map(String::from).into();
        assert_eq!(option_value(&args, &["--pid-file"]), None);
    }

    #[test]
    fn words_are_quoted() {
        assert_eq!(shell_words(&["php".into(), "a b.php".into(), "--x=1".into()]), "php 'a b.php' --x=1");
    }

    #[test]
    fn own_process_is_alive_and_pid_files_parse() {
        assert!(alive(std::process::id() as i32));
        let dir = std::env::temp_dir().join(format!("zmws-pid-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let f = dir.join("x.pid");
        let cfg = dir.join("zmws.toml");
        assert_eq!(pid_state(&f, Kind::Worker, &cfg), PidState::Absent);
        write_pid(&f, 999_999_999).unwrap();
        assert_eq!(pid_state(&f, Kind::Worker, &cfg), PidState::Stale(999_999_999));
        // A live process that is not a supervisor of this file is not ours.
        write_pid(&f, std::process::id()).unwrap();
        assert_eq!(pid_state(&f, Kind::Worker, &cfg), PidState::Foreign(std::process::id() as i32));
        assert_eq!(pid_state(&f, Kind::Broker, &cfg), PidState::Foreign(std::process::id() as i32));
        let _ = fs::remove_dir_all(&dir);
    }
}

//! `zmws.toml`: the configuration file read by `zmws start`, `stop`,
//! `status`, `broker -c` and `gateway -c`.
//!
//! ```toml
//! root = ".."                      # base of every relative path (default: the file's directory)
//!
//! [broker]                         # the broker `zmws start --servers` runs
//! client_endpoint = "tcp://127.0.0.1:5555"
//! heartbeat_ms = 1000
//!
//! [http]                           # the gateway embedded in that broker
//! endpoint = "127.0.0.1:5580"
//!
//! [process]                        # process control
//! run_dir = "run"
//! log_dir = "logs"
//!
//! [[worker]]
//! name = "rev_a"
//! command = ["php", "examples/php/reverse.php"]
//! flags = { verbose = true }       # appended as --verbose
//! count = 2
//! env = { APP_ENV = "dev" }
//! ```
//!
//! Every error names the file, line and column (`zmws.toml:12:9: …`):
//! syntax errors and unknown keys through the spans the `toml` parser
//! reports, semantic checks (duplicate names, empty commands, bad endpoints)
//! through spans kept on the values themselves. See `docs/OPERATIONS.md` for
//! the full reference.

use std::collections::HashSet;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::broker::BrokerConfig;
use crate::engine::EngineConfig;

/// Default path of the configuration file.
pub const DEFAULT_PATH: &str = "zmws.toml";

/// Accepted ranges (inclusive) of the broker's numeric settings, shared by
/// the config file and the `zmws broker`/`zmws worker` flags.
pub mod limits {
    /// `heartbeat_ms`, `--heartbeat-ms`.
    pub const HEARTBEAT_MS: (u64, u64) = (10, 3_600_000);
    /// `liveness`, `--liveness`.
    pub const LIVENESS: (u64, u64) = (1, 1000);
    /// `job_timeout_ms`, `--job-timeout-ms`.
    pub const JOB_TIMEOUT_MS: (u64, u64) = (1, u64::MAX / 4);
    /// `max_attempts`, `--max-attempts`.
    pub const MAX_ATTEMPTS: (u64, u64) = (1, 1000);
    /// `max_payload`, `--max-payload`.
    pub const MAX_PAYLOAD: (u64, u64) = (1, 1 << 40);
    /// `max_queued`, `--max-queued`.
    pub const MAX_QUEUED: (u64, u64) = (1, u32::MAX as u64 * 16);
    /// `max_workers_per_service`, `--max-workers-per-service`.
    pub const MAX_WORKERS_PER_SERVICE: (u64, u64) = (1, 10_000_000);
    /// `result_ttl_ms`, `--result-ttl-ms`.
    pub const RESULT_TTL_MS: (u64, u64) = (0, u64::MAX / 4);
    /// `max_finished`, `--max-finished`.
    pub const MAX_FINISHED: (u64, u64) = (0, u32::MAX as u64 * 16);
    /// `history`, `--history`.
    pub const HISTORY: (u64, u64) = (0, 1_000_000);
    /// `[http] max_body_bytes`, `--http-max-body`.
    pub const MAX_BODY_BYTES: (u64, u64) = (1, 1 << 40);
    /// `[http] default_timeout_ms` and `max_timeout_ms`, `--http-timeout-ms`.
    pub const HTTP_TIMEOUT_MS: (u64, u64) = (1, u64::MAX / 4);
    /// A worker's jobs at once (`zmws worker --concurrency`).
    pub const CONCURRENCY: (u64, u64) = (1, 100_000);
}

/// A configuration problem, with its place in the file when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (as given).
    pub path: PathBuf,
    /// 1-based line, when the error has a place.
    pub line: Option<usize>,
    /// 1-based column (in characters), when the error has a place.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// The offending source line, for display.
    pub source_line: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{l}:{c}: {}", self.path.display(), self.message)?,
            (Some(l), None) => write!(f, "{}:{l}: {}", self.path.display(), self.message)?,
            _ => write!(f, "{}: {}", self.path.display(), self.message)?,
        }
        if let (Some(src), Some(l), Some(c)) = (&self.source_line, self.line, self.column) {
            let gutter = l.to_string().len();
            write!(f, "\n{:gutter$} |\n{l} | {src}\n{:gutter$} | {:>c$}", "", "", "^")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl From<ConfigError> for crate::error::Error {
    fn from(e: ConfigError) -> Self {
        crate::error::Error::InvalidArgument(e.to_string())
    }
}

/// Turns a byte offset into (line, column, text of the line), all 1-based.
fn locate(text: &str, offset: usize) -> (usize, usize, String) {
    let offset = offset.min(text.len());
    let offset = (0..=offset).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = text[start..offset].chars().count() + 1;
    let end = text[offset..].find('\n').map(|i| offset + i).unwrap_or(text.len());
    (line, column, text[start..end].trim_end_matches('\r').to_string())
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn err_at(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        let (line, column, source_line) = match span {
            Some(s) => {
                let (l, c, src) = locate(self.text, s.start);
                (Some(l), Some(c), Some(src))
            }
            None => (None, None, None),
        };
        ConfigError { path: self.path.to_path_buf(), line, column, message: message.into(), source_line }
    }

    fn err<T>(&self, v: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        self.err_at(Some(v.span()), message)
    }
}

// ------------------------------------------------------------------ raw form

type S<T> = Option<Spanned<T>>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    root: S<String>,
    #[serde(default)]
    broker: RawBroker,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    process: RawProcess,
    #[serde(default, rename = "worker")]
    workers: Vec<RawWorker>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBroker {
    enabled: S<bool>,
    name: S<String>,
    client_endpoint: S<String>,
    worker_endpoint: S<String>,
    news_endpoint: S<String>,
    heartbeat_ms: S<u64>,
    liveness: S<u32>,
    job_timeout_ms: S<u64>,
    max_attempts: S<u32>,
    max_payload: S<u64>,
    max_queued: S<u64>,
    max_workers_per_service: S<u64>,
    result_ttl_ms: S<u64>,
    max_finished: S<u64>,
    history: S<u64>,
    hwm: S<u32>,
    spin_us: S<u32>,
    data_dir: S<String>,
    persist: S<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    enabled: S<bool>,
    endpoint: S<String>,
    broker: S<String>,
    token: S<String>,
    max_body_bytes: S<u64>,
    default_timeout_ms: S<u64>,
    max_timeout_ms: S<u64>,
    broker_timeout_ms: S<u64>,
    threads: S<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawProcess {
    run_dir: S<String>,
    log_dir: S<String>,
    stop_grace_ms: S<u64>,
    start_timeout_ms: S<u64>,
    restart_delay_ms: S<u64>,
    restart_max_delay_ms: S<u64>,
    restart_reset_ms: S<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorker {
    name: Spanned<String>,
    command: Spanned<Vec<Spanned<String>>>,
    flags: S<toml::Table>,
    count: S<u32>,
    env: S<toml::Table>,
    service: S<String>,
    broker: S<String>,
    restart: S<String>,
    cwd: S<String>,
}

// ------------------------------------------------------------------ checked form

/// The whole configuration, validated, with paths resolved.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (absolute when read from disk).
    pub path: PathBuf,
    /// Base directory of every relative path; workers run in it.
    pub root: PathBuf,
    /// `[broker]`.
    pub broker: BrokerSection,
    /// `[http]`.
    pub http: HttpSection,
    /// `[process]`.
    pub process: ProcessSection,
    /// `[[worker]]` entries, in file order.
    pub workers: Vec<WorkerSection>,
}

/// `[broker]`: the broker `zmws start --servers` runs, and where workers connect.
#[derive(Debug, Clone)]
pub struct BrokerSection {
    /// Whether `zmws start` runs a broker (false: workers use a broker elsewhere).
    pub enabled: bool,
    /// Process name (pid file `run/NAME.pid`, log `logs/NAME.log`).
    pub name: String,
    /// Client ROUTER endpoint.
    pub client_endpoint: String,
    /// Worker ROUTER endpoint.
    pub worker_endpoint: String,
    /// Job-event PUB endpoint; `None` (written `""`) disables it.
    pub news_endpoint: Option<String>,
    /// Engine limits and timings.
    pub engine: EngineConfig,
    /// ROUTER high-water mark.
    pub hwm: i32,
    /// Busy-poll time after each message, µs (see [`BrokerConfig::spin_us`]).
    pub spin_us: u32,
    /// Directory of the durable job store (default `var` under `root`).
    pub data_dir: PathBuf,
    /// Whether jobs are journaled to `data_dir` (false: memory only).
    pub persist: bool,
}

impl Default for BrokerSection {
    fn default() -> Self {
        let b = BrokerConfig::default();
        BrokerSection {
            enabled: true,
            name: "broker".into(),
            client_endpoint: b.client_endpoint,
            worker_endpoint: b.worker_endpoint,
            news_endpoint: b.news_endpoint,
            engine: b.engine,
            hwm: b.hwm,
            spin_us: b.spin_us,
            data_dir: PathBuf::from("var"),
            persist: true,
        }
    }
}

impl BrokerSection {
    /// The broker configuration this section describes.
    pub fn to_broker_config(&self) -> BrokerConfig {
        BrokerConfig {
            client_endpoint: self.client_endpoint.clone(),
            worker_endpoint: self.worker_endpoint.clone(),
            news_endpoint: self.news_endpoint.clone(),
            hwm: self.hwm,
            engine: self.engine.clone(),
            data_dir: self.persist.then(|| self.data_dir.clone()),
            spin_us: self.spin_us,
        }
    }
}

/// `[http]`: the HTTP gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSection {
    /// Whether `zmws broker` runs the gateway.
    pub enabled: bool,
    /// Listen address, `host:port`.
    pub endpoint: String,
    /// Broker client endpoint a standalone gateway connects to (default: the
    /// `[broker]` client endpoint).
    pub broker: Option<String>,
    /// Bearer token required on every route but `/healthz`.
    pub token: Option<String>,
    /// Largest request body accepted (bytes); larger gets 413.
    pub max_body_bytes: usize,
    /// `SYNC-` wait when the request has no `timeout_ms`.
    pub default_timeout_ms: u64,
    /// Largest `timeout_ms` accepted.
    pub max_timeout_ms: u64,
    /// How long administrative broker requests may take before 503.
    pub broker_timeout_ms: u64,
    /// Async runtime threads.
    pub threads: usize,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            enabled: true,
            endpoint: "127.0.0.1:5580".into(),
            broker: None,
            token: None,
            max_body_bytes: 16 * 1024 * 1024,
            default_timeout_ms: 30_000,
            max_timeout_ms: 3_600_000,
            broker_timeout_ms: 5_000,
            threads: 2,
        }
    }
}

/// `[process]`: pid files, logs and supervision.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessSection {
    /// Directory of `NAME.pid` files.
    pub run_dir: PathBuf,
    /// Directory of `NAME.log` files.
    pub log_dir: PathBuf,
    /// How long `stop` lets a process finish (its current job) before SIGKILL.
    pub stop_grace_ms: u64,
    /// How long `start` waits for the broker and the workers to come up.
    pub start_timeout_ms: u64,
    /// First delay before restarting a crashed worker.
    pub restart_delay_ms: u64,
    /// Largest restart delay (the delay doubles after each quick crash).
    pub restart_max_delay_ms: u64,
    /// A worker that ran this long before exiting restarts after the first delay again.
    pub restart_reset_ms: u64,
}

/// When the supervisor restarts a worker process that ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Whatever the exit status (the default: workers are meant to run forever).
    Always,
    /// Only when it exited with a non-zero status or a signal.
    OnFailure,
    /// Never: the supervisor ends with it.
    Never,
}

impl RestartPolicy {
    /// `always`, `on-failure` or `never`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Never => "never",
        }
    }

    /// Parses `always`, `on-failure` (or `on_failure`), `never`.
    pub fn parse(s: &str) -> Option<RestartPolicy> {
        match s {
            "always" => Some(RestartPolicy::Always),
            "on-failure" | "on_failure" => Some(RestartPolicy::OnFailure),
            "never" => Some(RestartPolicy::Never),
            _ => None,
        }
    }
}

/// One `[[worker]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSection {
    /// Name (pid and log file names; instances of `count > 1` are `NAME.1` …).
    pub name: String,
    /// Program and arguments, then one `--key=value` per flag.
    pub argv: Vec<String>,
    /// Processes to run.
    pub count: u32,
    /// Extra environment, in file order.
    pub env: Vec<(String, String)>,
    /// The service it offers, when known (shown by `status`).
    pub service: Option<String>,
    /// Broker worker endpoint it should use (default: `[broker]` worker endpoint).
    pub broker: String,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// Working directory (default: `root`).
    pub cwd: PathBuf,
}

impl WorkerSection {
    /// The process names of its instances.
    pub fn instance_names(&self) -> Vec<String> {
        if self.count == 1 {
            vec![self.name.clone()]
        } else {
            (1..=self.count).map(|i| format!("{}.{i}", self.name)).collect()
        }
    }
}

/// Turns a bind endpoint into one a local peer can connect to:
/// `tcp://0.0.0.0:P` and `tcp://*:P` become `tcp://127.0.0.1:P`,
/// `tcp://[::]:P` becomes `tcp://[::1]:P`; others are unchanged.
pub fn connectable(endpoint: &str) -> String {
    if let Some(rest) = endpoint.strip_prefix("tcp://") {
        if let Some((host, port)) = rest.rsplit_once(':') {
            let host = match host {
                "*" | "0.0.0.0" => "127.0.0.1",
                "[::]" | "::" => "[::1]",
                h => h,
            };
            return format!("tcp://{host}:{port}");
        }
    }
    endpoint.to_string()
}

fn check_endpoint(ctx: &Ctx, v: &Spanned<String>, allow_empty: bool) -> Result<Option<String>, ConfigError> {
    let s = v.get_ref().trim();
    if s.is_empty() {
        return if allow_empty { Ok(None) } else { Err(ctx.err(v, "endpoint must not be empty")) };
    }
    if s.starts_with("inproc://") {
        return Err(ctx.err(v, "inproc:// endpoints only reach sockets inside one process; use tcp:// or ipc://"));
    }
    if let Some(rest) = s.strip_prefix("tcp://") {
        let Some((host, port)) = rest.rsplit_once(':') else {
            return Err(ctx.err(v, format!("'{s}' has no port (expected tcp://HOST:PORT)")));
        };
        if host.is_empty() || port.parse::<u16>().map(|p| p == 0).unwrap_or(true) {
            return Err(
                ctx.err(v, format!("'{s}' needs a host and a fixed port (1-65535): other processes must find it"))
            );
        }
        return Ok(Some(s.to_string()));
    }
    if s.starts_with("ipc://") && s.len() > "ipc://".len() {
        return Ok(Some(s.to_string()));
    }
    Err(ctx.err(v, format!("'{s}' is not a ZeroMQ endpoint (tcp://HOST:PORT or ipc://PATH)")))
}

/// Resolves `host:port` (an optional `http://` prefix is accepted).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim().trim_start_matches("http://").trim_end_matches('/');
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.to_socket_addrs()
        .map_err(|e| format!("'{s}' is not a listen address (HOST:PORT): {e}"))?
        .next()
        .ok_or_else(|| format!("'{s}' does not resolve to an address"))
}

fn num<T: Copy + PartialOrd + fmt::Display>(
    ctx: &Ctx,
    v: &S<T>,
    default: T,
    min: T,
    max: T,
    what: &str,
) -> Result<T, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) => {
            let x = *s.get_ref();
            if x < min || x > max {
                Err(ctx.err(s, format!("{what} must be between {min} and {max} (got {x})")))
            } else {
                Ok(x)
            }
        }
    }
}

fn flag<T: Clone>(v: &S<T>, default: T) -> T {
    v.as_ref().map(|s| s.get_ref().clone()).unwrap_or(default)
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 100
        && !n.starts_with('.')
        && !n.starts_with('-')
        && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn scalar_text(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Turns a `flags` table into arguments the way the seed's workers read them:
/// `key = "v"` → `--key=v`, `key = true` → `--key`, `key = false` → nothing,
/// `key = [a, b]` → `--key=a --key=b`.
pub fn flags_to_args(flags: &toml::Table) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (k, v) in flags {
        if k.is_empty() || k.starts_with('-') || k.contains('=') || k.chars().any(char::is_whitespace) {
            return Err(format!("flag name '{k}' must not be empty, start with '-', or contain '=' or spaces"));
        }
        match v {
            toml::Value::Boolean(true) => out.push(format!("--{k}")),
            toml::Value::Boolean(false) => {}
            toml::Value::Array(items) => {
                for item in items {
                    match scalar_text(item) {
                        Some(t) => out.push(format!("--{k}={t}")),
                        None => return Err(format!("flag '{k}': array items must be strings, numbers or booleans")),
                    }
                }
            }
            other => match scalar_text(other) {
                Some(t) => out.push(format!("--{k}={t}")),
                None => return Err(format!("flag '{k}' must be a string, number, boolean or array")),
            },
        }
    }
    Ok(out)
}

/// Finds the service a worker command offers when it says so on its command
/// line (`--service X` / `--service=X`, as `zmws worker` takes it).
fn service_from_argv(argv: &[String]) -> Option<String> {
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        if a == "--service" {
            return it.next().cloned();
        }
        if let Some(v) = a.strip_prefix("--service=") {
            return Some(v.to_string());
        }
    }
    None
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_path_buf(),
            line: None,
            column: None,
            message: format!("cannot read the configuration file: {e}"),
            source_line: None,
        })?;
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.to_path_buf())
        };
        let mut cfg = Config::parse(&text, path)?;
        let dir = abs.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        cfg.rebase(&dir);
        cfg.path = abs;
        Ok(cfg)
    }

    /// The configuration with every default (no file).
    pub fn defaults() -> Config {
        let root = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        Config {
            path: PathBuf::from(DEFAULT_PATH),
            root: root.clone(),
            broker: BrokerSection { data_dir: root.join("var"), ..BrokerSection::default() },
            http: HttpSection::default(),
            process: ProcessSection {
                run_dir: root.join("run"),
                log_dir: root.join("logs"),
                stop_grace_ms: 10_000,
                start_timeout_ms: 10_000,
                restart_delay_ms: 500,
                restart_max_delay_ms: 30_000,
                restart_reset_ms: 10_000,
            },
            workers: Vec::new(),
        }
    }

    /// Parses configuration text. Relative paths stay relative to `root`
    /// as written (the file's directory is applied by [`Config::load`]).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let ctx = Ctx { path, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim().to_string();
            ctx.err_at(e.span(), msg)
        })?;
        let root = PathBuf::from(flag(&raw.root, ".".to_string()));

        // [broker]
        let b = &raw.broker;
        let mut broker = BrokerSection { enabled: flag(&b.enabled, true), ..BrokerSection::default() };
        if let Some(n) = &b.name {
            if !valid_name(n.get_ref()) {
                return Err(
                    ctx.err(n, "a name may only use letters, digits, '_', '-' and '.' (and not start with '.' or '-')")
                );
            }
            broker.name = n.get_ref().clone();
        }
        if let Some(v) = &b.client_endpoint {
            broker.client_endpoint = check_endpoint(&ctx, v, false)?.unwrap_or_default();
        }
        if let Some(v) = &b.worker_endpoint {
            broker.worker_endpoint = check_endpoint(&ctx, v, false)?.unwrap_or_default();
        }
        if let Some(v) = &b.news_endpoint {
            broker.news_endpoint = check_endpoint(&ctx, v, true)?;
        }
        let mut seen_ep: Vec<(&Spanned<String>, String)> = Vec::new();
        for v in [&b.client_endpoint, &b.worker_endpoint, &b.news_endpoint].into_iter().flatten() {
            let e = v.get_ref().trim().to_string();
            if !e.is_empty() && seen_ep.iter().any(|(_, o)| *o == e) {
                return Err(ctx.err(v, format!("endpoint '{e}' is used twice in [broker]")));
            }
            seen_ep.push((v, e));
        }
        let e = &mut broker.engine;
        let d = EngineConfig::default();
        use limits::*;
        e.heartbeat_ms = num(&ctx, &b.heartbeat_ms, d.heartbeat_ms, HEARTBEAT_MS.0, HEARTBEAT_MS.1, "heartbeat_ms")?;
        e.liveness = num(&ctx, &b.liveness, d.liveness, LIVENESS.0 as u32, LIVENESS.1 as u32, "liveness")?;
        e.job_timeout_ms =
            num(&ctx, &b.job_timeout_ms, d.job_timeout_ms, JOB_TIMEOUT_MS.0, JOB_TIMEOUT_MS.1, "job_timeout_ms")?;
        e.max_attempts =
            num(&ctx, &b.max_attempts, d.max_attempts, MAX_ATTEMPTS.0 as u32, MAX_ATTEMPTS.1 as u32, "max_attempts")?;
        e.max_payload =
            num(&ctx, &b.max_payload, d.max_payload as u64, MAX_PAYLOAD.0, MAX_PAYLOAD.1, "max_payload")? as usize;
        e.max_queued =
            num(&ctx, &b.max_queued, d.max_queued as u64, MAX_QUEUED.0, MAX_QUEUED.1, "max_queued")? as usize;
        e.max_workers_per_service = num(
            &ctx,
            &b.max_workers_per_service,
            d.max_workers_per_service as u64,
            MAX_WORKERS_PER_SERVICE.0,
            MAX_WORKERS_PER_SERVICE.1,
            "max_workers_per_service",
        )? as usize;
        e.result_ttl_ms =
            num(&ctx, &b.result_ttl_ms, d.result_ttl_ms, RESULT_TTL_MS.0, RESULT_TTL_MS.1, "result_ttl_ms")?;
        e.max_finished =
            num(&ctx, &b.max_finished, d.max_finished as u64, MAX_FINISHED.0, MAX_FINISHED.1, "max_finished")? as usize;
        e.history_len = num(&ctx, &b.history, d.history_len as u64, HISTORY.0, HISTORY.1, "history")? as usize;
        broker.hwm = num(&ctx, &b.hwm, broker.hwm as u32, 1, i32::MAX as u32, "hwm")? as i32;
        broker.spin_us = num(&ctx, &b.spin_us, broker.spin_us, 0, crate::broker::MAX_SPIN_US, "spin_us")?;
        if let Some(dd) = &b.data_dir {
            if dd.get_ref().trim().is_empty() {
                return Err(ctx.err(dd, "data_dir must not be empty (leave it out instead)"));
            }
            broker.data_dir = PathBuf::from(dd.get_ref());
        }
        broker.persist = flag(&b.persist, true);

        // [http]
        let h = &raw.http;
        let mut http = HttpSection { enabled: flag(&h.enabled, true), ..HttpSection::default() };
        if let Some(v) = &h.endpoint {
            parse_listen(v.get_ref()).map_err(|m| ctx.err(v, m))?;
            http.endpoint = v.get_ref().trim().to_string();
        }
        if let Some(v) = &h.broker {
            http.broker = check_endpoint(&ctx, v, false)?;
        }
        if let Some(v) = &h.token {
            let t = v.get_ref();
            if t.is_empty() {
                http.token = None;
            } else if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(ctx.err(v, "token must not contain spaces or control characters"));
            } else {
                http.token = Some(t.clone());
            }
        }
        http.max_body_bytes = num(
            &ctx,
            &h.max_body_bytes,
            http.max_body_bytes as u64,
            limits::MAX_BODY_BYTES.0,
            limits::MAX_BODY_BYTES.1,
            "max_body_bytes",
        )? as usize;
        http.default_timeout_ms = num(
            &ctx,
            &h.default_timeout_ms,
            http.default_timeout_ms,
            limits::HTTP_TIMEOUT_MS.0,
            limits::HTTP_TIMEOUT_MS.1,
            "default_timeout_ms",
        )?;
        http.max_timeout_ms = num(
            &ctx,
            &h.max_timeout_ms,
            http.max_timeout_ms,
            limits::HTTP_TIMEOUT_MS.0,
            limits::HTTP_TIMEOUT_MS.1,
            "max_timeout_ms",
        )?;
        if http.default_timeout_ms > http.max_timeout_ms {
            let at = h.default_timeout_ms.as_ref().or(h.max_timeout_ms.as_ref()).map(|s| s.span());
            return Err(ctx.err_at(at, "default_timeout_ms must not exceed max_timeout_ms"));
        }
        http.broker_timeout_ms =
            num(&ctx, &h.broker_timeout_ms, http.broker_timeout_ms, 1, 3_600_000, "broker_timeout_ms")?;
        http.threads = num(&ctx, &h.threads, 2, 1, 256, "threads")? as usize;

        // [process]
        let p = &raw.process;
        let process = ProcessSection {
            run_dir: PathBuf::from(flag(&p.run_dir, "run".to_string())),
            log_dir: PathBuf::from(flag(&p.log_dir, "logs".to_string())),
            stop_grace_ms: num(&ctx, &p.stop_grace_ms, 10_000, 0, 86_400_000, "stop_grace_ms")?,
            start_timeout_ms: num(&ctx, &p.start_timeout_ms, 10_000, 0, 3_600_000, "start_timeout_ms")?,
            restart_delay_ms: num(&ctx, &p.restart_delay_ms, 500, 1, 3_600_000, "restart_delay_ms")?,
            restart_max_delay_ms: num(&ctx, &p.restart_max_delay_ms, 30_000, 1, 86_400_000, "restart_max_delay_ms")?,
            restart_reset_ms: num(&ctx, &p.restart_reset_ms, 10_000, 0, 86_400_000, "restart_reset_ms")?,
        };
        for (v, what) in [(&p.run_dir, "run_dir"), (&p.log_dir, "log_dir")] {
            if let Some(v) = v {
                if v.get_ref().trim().is_empty() {
                    return Err(ctx.err(v, format!("{what} must not be empty")));
                }
            }
        }
        if process.restart_max_delay_ms < process.restart_delay_ms {
            let at = p.restart_max_delay_ms.as_ref().or(p.restart_delay_ms.as_ref()).map(|s| s.span());
            return Err(ctx.err_at(at, "restart_max_delay_ms must not be below restart_delay_ms"));
        }

        // [[worker]]
        let mut names: HashSet<String> = HashSet::new();
        names.insert(broker.name.clone());
        let mut workers = Vec::new();
        for w in &raw.workers {
            let name = w.name.get_ref();
            if !valid_name(name) {
                return Err(ctx.err(
                    &w.name,
                    "a worker name may only use letters, digits, '_', '-' and '.' (and not start with '.' or '-')",
                ));
            }
            let command: Vec<String> = w.command.get_ref().iter().map(|s| s.get_ref().clone()).collect();
            if command.is_empty() {
                return Err(ctx.err(
                    &w.command,
                    format!("worker '{name}': command must name a program, e.g. [\"php\", \"worker.php\"]"),
                ));
            }
            if let Some(first) = w.command.get_ref().first() {
                if first.get_ref().trim().is_empty() {
                    return Err(ctx.err(first, format!("worker '{name}': the program name is empty")));
                }
            }
            let count = num(&ctx, &w.count, 1, 1, 1000, "count")?;
            let mut argv = command.clone();
            if let Some(f) = &w.flags {
                argv.extend(flags_to_args(f.get_ref()).map_err(|m| ctx.err(f, format!("worker '{name}': {m}")))?);
            }
            let mut env = Vec::new();
            if let Some(t) = &w.env {
                for (k, v) in t.get_ref() {
                    if k.is_empty() || k.contains('=') || k.contains('\0') {
                        return Err(ctx.err(t, format!("worker '{name}': bad environment variable name '{k}'")));
                    }
                    match scalar_text(v) {
                        Some(s) => env.push((k.clone(), s)),
                        None => {
                            return Err(ctx.err(
                                t,
                                format!("worker '{name}': env value of '{k}' must be a string, number or boolean"),
                            ))
                        }
                    }
                }
            }
            let restart = match &w.restart {
                None => RestartPolicy::Always,
                Some(r) => RestartPolicy::parse(r.get_ref()).ok_or_else(|| {
                    ctx.err(
                        r,
                        format!("restart must be \"always\", \"on-failure\" or \"never\" (got \"{}\")", r.get_ref()),
                    )
                })?,
            };
            let endpoint = match &w.broker {
                Some(v) => check_endpoint(&ctx, v, false)?.unwrap_or_default(),
                None => connectable(&broker.worker_endpoint),
            };
            let service = match &w.service {
                Some(s) if s.get_ref().trim().is_empty() => return Err(ctx.err(s, "service must not be empty")),
                Some(s) => Some(s.get_ref().clone()),
                None => w
                    .flags
                    .as_ref()
                    .and_then(|f| f.get_ref().get("service").and_then(|v| v.as_str().map(str::to_string)))
                    .or_else(|| service_from_argv(&command)),
            };
            let section = WorkerSection {
                name: name.clone(),
                argv,
                count,
                env,
                service,
                broker: endpoint,
                restart,
                cwd: PathBuf::from(flag(&w.cwd, ".".to_string())),
            };
            for n in section.instance_names() {
                if !names.insert(n.clone()) {
                    return Err(ctx.err(
                        &w.name,
                        format!("process name '{n}' is used twice (worker and broker names must be unique)"),
                    ));
                }
            }
            workers.push(section);
        }

        Ok(Config { path: path.to_path_buf(), root, broker, http, process, workers })
    }

    /// Makes every relative path absolute: `root` against `dir`, the rest against `root`.
    fn rebase(&mut self, dir: &Path) {
        let root = dir.join(&self.root);
        let root = normalize(&root);
        let abs = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { normalize(&root.join(p)) };
        self.process.run_dir = abs(&self.process.run_dir);
        self.process.log_dir = abs(&self.process.log_dir);
        self.broker.data_dir = abs(&self.broker.data_dir);
        for w in &mut self.workers {
            w.cwd = abs(&w.cwd);
        }
        self.root = root;
    }

    /// The broker client endpoint a local program should connect to.
    pub fn client_endpoint(&self) -> String {
        self.http.broker.clone().unwrap_or_else(|| connectable(&self.broker.client_endpoint))
    }
}

/// Removes `.` and `..` components lexically (no symlink resolution).
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("t.toml"))
    }

    #[test]
    fn defaults_and_full_file() {
        let c = parse("").unwrap();
        assert_eq!(c.broker.client_endpoint, "tcp://127.0.0.1:5555");
        assert_eq!(c.http.endpoint, "127.0.0.1:5580");
        assert!(c.workers.is_empty());
        let c = parse(
            r#"
root = ".."
[broker]
client_endpoint = "tcp://0.0.0.0:6000"
worker_endpoint = "tcp://127.0.0.1:6001"
news_endpoint = ""
heartbeat_ms = 250
spin_us = 300
data_dir = "var/zmws"
[http]
endpoint = "127.0.0.1:6080"
token = "s3cret"
[process]
run_dir = "var/run"
[[worker]]
name = "rev"
command = ["php", "rev.php"]
flags = { db = "main", verbose = true, quiet = false, tag = ["a", "b"], n = 3 }
count = 2
env = { A = "1", B = 2 }
"#,
        )
        .unwrap();
        assert_eq!(c.broker.news_endpoint, None);
        assert_eq!(c.broker.engine.heartbeat_ms, 250);
        assert_eq!((c.broker.spin_us, c.broker.to_broker_config().spin_us), (300, 300));
        assert_eq!(parse("").unwrap().broker.spin_us, 0, "off by default");
        assert!(parse("[broker]\nspin_us = 10001\n").unwrap_err().to_string().contains("spin_us"));
        assert_eq!(c.client_endpoint(), "tcp://127.0.0.1:6000");
        assert_eq!(c.http.token.as_deref(), Some("s3cret"));
        let w = &c.workers[0];
        assert_eq!(w.argv, ["php", "rev.php", "--db=main", "--verbose", "--tag=a", "--tag=b", "--n=3"]);
        assert_eq!(w.instance_names(), ["rev.1", "rev.2"]);
        assert_eq!(w.env, [("A".to_string(), "1".to_string()), ("B".to_string(), "2".to_string())]);
        assert_eq!(w.broker, "tcp://127.0.0.1:6001");
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("[broker]\nheartbeat_ms = 1000\nheartbeet = 3\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.to_string().starts_with("t.toml:3:1:"), "{e}");
        let e = parse("[broker]\nheartbeat_ms = \"fast\"\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        let e = parse("[[worker]]\nname = \"a\"\ncommand = [\"x\"]\n\n[[worker]]\nname = \"a\"\ncommand = [\"y\"]\n")
            .unwrap_err();
        assert_eq!((e.line, e.column), (Some(6), Some(8)), "{e}");
        assert!(e.message.contains("used twice"));
        let e = parse("[[worker]]\nname = \"a\"\ncommand = []\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        let e = parse("[[worker]]\nname = \"a\"\ncommand = [\"x\"]\ncount = 0\n").unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
        let e = parse("[broker]\nclient_endpoint = \"tcp://127.0.0.1\"\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        let e = parse("[http]\nendpoint = \"nowhere\"\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        let e = parse("[[worker]]\nname = \"a b\"\ncommand = [\"x\"]\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        let e = parse("[[worker]]\nname = \"a\"\n").unwrap_err();
        assert!(e.message.contains("command"), "{e}");
        let e = parse("[broker\n").unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
        let e = parse("[[worker]]\nname = \"a\"\ncommand = [\"x\"]\nrestart = \"sometimes\"\n").unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
    }

    #[test]
    fn service_is_found() {
        let c = parse(
            "[[worker]]\nname = \"a\"\ncommand = [\"zmws\", \"worker\", \"--service\", \"STR-REV\", \"--\", \"rev\"]\n",
        )
        .unwrap();
        assert_eq!(c.workers[0].service.as_deref(), Some("STR-REV"));
        let c = parse("[[worker]]\nname = \"a\"\ncommand = [\"php\", \"w.php\"]\nflags = { service = \"SLEEP\" }\n")
            .unwrap();
        assert_eq!(c.workers[0].service.as_deref(), Some("SLEEP"));
    }

    #[test]
    fn connectable_endpoints() {
        assert_eq!(connectable("tcp://*:5555"), "tcp://127.0.0.1:5555");
        assert_eq!(connectable("tcp://0.0.0.0:5555"), "tcp://127.0.0.1:5555");
        assert_eq!(connectable("tcp://[::]:5555"), "tcp://[::1]:5555");
        assert_eq!(connectable("ipc:///tmp/x"), "ipc:///tmp/x");
    }

    #[test]
    fn rebase_resolves_against_the_file() {
        let mut c = parse("root = \"..\"\n[[worker]]\nname = \"a\"\ncommand = [\"x\"]\n").unwrap();
        c.rebase(Path::new("/srv/app/examples"));
        assert_eq!(c.root, PathBuf::from("/srv/app"));
        assert_eq!(c.process.run_dir, PathBuf::from("/srv/app/run"));
        assert_eq!(c.workers[0].cwd, PathBuf::from("/srv/app"));
    }
}

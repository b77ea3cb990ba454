//! Helpers for the HTTP gateway and process-control tests: a temporary
//! installation (directory, `zmws.toml` on free ports, worker scripts) run
//! with the real `zmws start/stop/status`, a small HTTP client over `ureq`,
//! and process checks through `/proc`.
//!
//! Every wait is bounded. The only processes ever signalled are the ones an
//! installation started (pids from its own pid files and their process
//! groups), and an installation always stops them when dropped.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The binary under test.
pub const ZMWS: &str = env!("CARGO_BIN_EXE_zmws");

/// Generous bound for "eventually" checks on a loaded 2-core machine.
pub const LONG: Duration = Duration::from_secs(20);

#[path = "../ports/mod.rs"]
mod ports;
pub use ports::free_port;

/// Polls `f` until it returns `Some`; panics with `what` past `limit`.
pub fn eventually<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The python interpreter for the sample STR-REV worker (the system one
/// starts faster than a pyenv shim).
pub fn python() -> String {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3".into()
    } else {
        "python3".into()
    }
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs a command to completion within `limit` (killed and reported past it).
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Out {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let t1 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let t2 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("command {cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Out { code: status.code(), stdout: t1.join().unwrap_or_default(), stderr: t2.join().unwrap_or_default() }
}

// ------------------------------------------------------------------ /proc

fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Whether `pid` is a live process (zombies count as gone: the machine's
/// init may not reap orphans).
pub fn alive(pid: i32) -> bool {
    match stat_fields(pid) {
        Some(f) => f.first().map(|s| s != "Z" && s != "X").unwrap_or(false),
        None => false,
    }
}

/// Whether `pid` runs the zmws executable.
pub fn is_zmws(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            let argv0 = c.split(|b| *b == 0).next().unwrap_or(&[]).to_vec();
            Path::new(&String::from_utf8_lossy(&argv0).into_owned())
                .file_name()
                .map(|n| n.to_string_lossy().starts_with("zmws"))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

/// Live members of process group `pgid`.
pub fn group_members(pgid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            if let Some(f) = stat_fields(pid) {
                if f.len() > 2 && f[2].parse::<i32>().ok() == Some(pgid) && f[0] != "Z" && f[0] != "X" {
                    out.push(pid);
                }
            }
        }
    }
    out
}

/// The number of threads of `pid`.
pub fn thread_count(pid: i32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Threads:").and_then(|v| v.trim().parse().ok())))
        .unwrap_or(0)
}

/// Live children of `pid`.
pub fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            if let Some(f) = stat_fields(p) {
                if f.len() > 1 && f[1].parse::<i32>().ok() == Some(pid) && f[0] != "Z" {
                    out.push(p);
                }
            }
        }
    }
    out
}

// ------------------------------------------------------------------ HTTP

/// One HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    /// The `error` field of a JSON error body.
    pub fn error(&self) -> String {
        assert!(
            self.content_type.starts_with("application/json"),
            "error body is not JSON: {} {}",
            self.content_type,
            self.text()
        );
        self.json()["error"].as_str().unwrap_or_else(|| panic!("no error field: {}", self.text())).to_string()
    }
}

/// A small blocking HTTP client (statuses are values, not errors).
#[derive(Clone)]
pub struct Http {
    agent: ureq::Agent,
    pub base: String,
    pub token: Option<String>,
}

impl Http {
    pub fn new(base: &str) -> Http {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(90)))
            .max_idle_connections_per_host(256)
            .build();
        Http { agent: config.into(), base: base.trim_end_matches('/').to_string(), token: None }
    }

    pub fn with_token(&self, token: Option<&str>) -> Http {
        Http { token: token.map(str::to_string), ..self.clone() }
    }

    fn finish(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>, what: &str) -> Resp {
        let mut r = r.unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = r.status().as_u16();
        let headers: Vec<(String, String)> =
            r.headers().iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())).collect();
        let content_type = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let body =
            r.body_mut().with_config().limit(64 << 20).read_to_vec().unwrap_or_else(|e| panic!("{what}: body: {e}"));
        Resp { status, content_type, headers, body }
    }

    fn auth(&self) -> Option<String> {
        self.token.as_ref().map(|t| format!("Bearer {t}"))
    }

    pub fn get(&self, path: &str) -> Resp {
        let url = format!("{}{path}", self.base);
        let mut rb = self.agent.get(&url);
        if let Some(a) = self.auth() {
            rb = rb.header("Authorization", &a);
        }
        Http::finish(rb.call(), &format!("GET {url}"))
    }

    pub fn delete(&self, path: &str) -> Resp {
        let url = format!("{}{path}", self.base);
        let mut rb = self.agent.delete(&url);
        if let Some(a) = self.auth() {
            rb = rb.header("Authorization", &a);
        }
        Http::finish(rb.call(), &format!("DELETE {url}"))
    }

    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Resp {
        let url = format!("{}{path}", self.base);
        let mut rb = self.agent.post(&url).header("Content-Type", content_type);
        if let Some(a) = self.auth() {
            rb = rb.header("Authorization", &a);
        }
        Http::finish(rb.send(body), &format!("POST {url}"))
    }

    /// POST with an `Idempotency-Key` header.
    pub fn post_keyed(&self, path: &str, key: &str) -> Resp {
        let url = format!("{}{path}", self.base);
        let mut rb = self.agent.post(&url).header("Content-Type", "application/json").header("Idempotency-Key", key);
        if let Some(a) = self.auth() {
            rb = rb.header("Authorization", &a);
        }
        Http::finish(rb.send(b"{}"), &format!("POST {url}"))
    }

    /// HEAD: the body of the response is always empty.
    pub fn head(&self, path: &str) -> Resp {
        let url = format!("{}{path}", self.base);
        let mut rb = self.agent.head(&url);
        if let Some(a) = self.auth() {
            rb = rb.header("Authorization", &a);
        }
        Http::finish(rb.call(), &format!("HEAD {url}"))
    }

    pub fn put(&self, path: &str) -> Resp {
        let url = format!("{}{path}", self.base);
        let mut rb = self.agent.put(&url);
        if let Some(a) = self.auth() {
            rb = rb.header("Authorization", &a);
        }
        Http::finish(rb.send_empty(), &format!("PUT {url}"))
    }

    /// The value of one Prometheus sample line (`name{labels}`), 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        let m = self.get("/metrics");
        assert_eq!(m.status, 200, "{}", m.text());
        m.text()
            .lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .unwrap_or(0.0)
    }
}

// ------------------------------------------------------------------ installation

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Ports of one installation.
#[derive(Clone, Debug)]
pub struct Ports {
    pub client: u16,
    pub worker: u16,
    pub news: u16,
    pub http: u16,
}

/// A temporary zmws installation driven through the CLI.
pub struct Install {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub ports: Ports,
    pub http: Http,
    seen: Mutex<BTreeSet<i32>>,
}

impl Install {
    /// Creates the directory, the worker scripts (`rev.py`, `fail.sh`) and
    /// `zmws.toml` from `make(ports, dir)`.
    pub fn new(tag: &str, make: impl FnOnce(&Ports, &Path) -> String) -> Install {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("zmws-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(
            dir.join("rev.py"),
            "import json, sys\nparam = json.load(sys.stdin)\nsys.stdout.write(param[\"str\"][::-1])\n",
        )
        .expect("rev.py");
        std::fs::write(dir.join("fail.sh"), "echo \"boom: cannot do $(cat)\" >&2\nexit 3\n").expect("fail.sh");
        let ports = Ports { client: free_port(), worker: free_port(), news: free_port(), http: free_port() };
        let config = dir.join("zmws.toml");
        std::fs::write(&config, make(&ports, &dir)).expect("zmws.toml");
        let http = Http::new(&format!("http://127.0.0.1:{}", ports.http));
        Install { dir, config, ports, http, seen: Mutex::new(BTreeSet::new()) }
    }

    /// The usual `[broker]`, `[http]` and `[process]` tables for `ports`.
    pub fn base_config(p: &Ports, extra_broker: &str, extra_http: &str) -> String {
        format!(
            r#"[broker]
client_endpoint = "tcp://127.0.0.1:{}"
worker_endpoint = "tcp://127.0.0.1:{}"
news_endpoint = "tcp://127.0.0.1:{}"
heartbeat_ms = 500
{extra_broker}

[http]
endpoint = "127.0.0.1:{}"
{extra_http}

[process]
stop_grace_ms = 1500
start_timeout_ms = 20000
restart_delay_ms = 100
restart_max_delay_ms = 1000
"#,
            p.client, p.worker, p.news, p.http
        )
    }

    /// A `[[worker]]` entry running `zmws worker --service SERVICE -- CMD…`.
    pub fn worker_entry(name: &str, service: &str, concurrency: u32, count: u32, cmd: &[&str]) -> String {
        let mut argv: Vec<String> = vec![ZMWS.into(), "worker".into(), "--service".into(), service.into()];
        argv.extend(["--concurrency".into(), concurrency.to_string(), "--".into()]);
        argv.extend(cmd.iter().map(|s| s.to_string()));
        let list = argv.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(", ");
        format!("\n[[worker]]\nname = \"{name}\"\ncommand = [{list}]\ncount = {count}\n")
    }

    /// `zmws ARGS… -c zmws.toml`, bounded.
    pub fn zmws(&self, args: &[&str]) -> Out {
        let out = run_bounded(
            Command::new(ZMWS).args(args).arg("-c").arg(&self.config).current_dir(&self.dir),
            Duration::from_secs(60),
        );
        self.remember();
        out
    }

    /// `zmws start` (asserting success).
    pub fn start(&self) -> Out {
        let out = self.zmws(&["start"]);
        assert!(out.ok(), "zmws start failed:\n{}\n--- logs ---\n{}", out.text(), self.logs());
        out
    }

    /// `zmws stop` (asserting success).
    pub fn stop(&self) -> Out {
        let out = self.zmws(&["stop"]);
        assert!(out.ok(), "zmws stop failed:\n{}", out.text());
        out
    }

    /// Every pid file: (name, pid).
    pub fn pid_files(&self) -> Vec<(String, i32)> {
        let mut v = Vec::new();
        if let Ok(rd) = std::fs::read_dir(self.dir.join("run")) {
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().and_then(|x| x.to_str()) == Some("pid") {
                    if let Some(pid) = std::fs::read_to_string(&p).ok().and_then(|s| s.trim().parse::<i32>().ok()) {
                        v.push((p.file_stem().unwrap().to_string_lossy().into_owned(), pid));
                    }
                }
            }
        }
        v.sort();
        v
    }

    pub fn pid_of(&self, name: &str) -> Option<i32> {
        self.pid_files().into_iter().find(|(n, _)| n == name).map(|(_, p)| p)
    }

    /// Records the pids (and process groups) this installation started.
    pub fn remember(&self) {
        let mut seen = self.seen.lock().unwrap();
        for (_, pid) in self.pid_files() {
            seen.insert(pid);
        }
    }

    /// Every live process of this installation: the recorded session leaders
    /// and all members of their process groups.
    pub fn processes(&self) -> Vec<i32> {
        self.remember();
        let seen = self.seen.lock().unwrap().clone();
        let mut all = BTreeSet::new();
        for pgid in seen {
            if alive(pgid) {
                all.insert(pgid);
            }
            all.extend(group_members(pgid));
        }
        all.into_iter().collect()
    }

    /// All log files, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(rd) = std::fs::read_dir(self.dir.join("logs")) {
            for e in rd.flatten() {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                s.push_str(&format!("== {}\n", e.path().display()));
                for l in tail.into_iter().rev() {
                    s.push_str(l);
                    s.push('\n');
                }
            }
        }
        s
    }

    /// Waits until the broker lists `n` live workers for `service`.
    pub fn wait_workers(&self, http: &Http, service: &str, n: usize) {
        eventually(&format!("{n} {service} worker(s)"), LONG, || {
            let r = http.get("/SERVER-WORKERS");
            if r.status != 200 {
                return None;
            }
            let count = r.json().as_array()?.iter().filter(|w| w["service"] == service).count();
            (count >= n).then_some(())
        });
    }
}

impl Drop for Install {
    fn drop(&mut self) {
        // Stop whatever is still running: first politely, then by group.
        if !self.processes().is_empty() {
            let _ = run_bounded(
                Command::new(ZMWS).args(["stop", "--grace-ms", "500", "-c"]).arg(&self.config).current_dir(&self.dir),
                Duration::from_secs(30),
            );
        }
        let seen = self.seen.lock().map(|s| s.clone()).unwrap_or_default();
        for pgid in seen {
            // A live leader must still be one of ours (pids get reused).
            if alive(pgid) && !is_zmws(pgid) {
                continue;
            }
            if alive(pgid) || !group_members(pgid).is_empty() {
                // SAFETY: kill(2) on process groups this installation created.
                unsafe {
                    libc::kill(-pgid, libc::SIGKILL);
                    libc::kill(pgid, libc::SIGKILL);
                }
            }
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

//! `zmws start/stop/status` and `zmws supervise`: detached processes, pid
//! files, "already running" and stale-pid handling, crash restarts, partial
//! stops, config errors with line numbers, and the standalone gateway.

#[path = "gateway/mod.rs"]
mod gateway;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gateway::{alive, children, eventually, group_members, python, run_bounded, Http, Install, LONG, ZMWS};

fn small_install(tag: &str, http_enabled: bool, extra_http: &str) -> Install {
    Install::new(tag, |p, _| {
        let py = python();
        let mut http = format!("enabled = {http_enabled}\n");
        http.push_str(extra_http);
        let mut c = Install::base_config(p, "", &http);
        c.push_str(&Install::worker_entry("rev", "STR-REV", 2, 1, &[&py, "-S", "rev.py"]));
        c.push_str(&Install::worker_entry("nap", "SLEEP", 1, 1, &["sleep", "1"]));
        c
    })
}

#[test]
fn start_status_restart_stale_pids_and_stop() {
    let inst = small_install("ctl", true, "");
    let out = inst.start();
    let broker_pid = inst.pid_of("broker").expect("broker pid file");
    let rev_pid = inst.pid_of("rev").expect("rev pid file");
    let nap_pid = inst.pid_of("nap").expect("nap pid file");
    assert!(out.stdout.contains(&format!("started broker (PID {broker_pid})")), "{}", out.text());
    assert!(out.stdout.contains(&format!("started rev (PID {rev_pid})")), "{}", out.text());
    assert!(inst.dir.join("logs/broker.log").exists() && inst.dir.join("logs/rev.log").exists());

    // Detached: own session, parent is not us.
    for pid in [broker_pid, rev_pid, nap_pid] {
        assert!(alive(pid));
        assert!(!group_members(pid).is_empty());
    }

    // Starting again changes nothing.
    let again = inst.zmws(&["start"]);
    assert!(again.ok(), "{}", again.text());
    for (name, pid) in [("broker", broker_pid), ("rev", rev_pid), ("nap", nap_pid)] {
        assert!(again.stdout.contains(&format!("{name} already running (PID {pid})")), "{}", again.text());
    }
    assert_eq!(inst.pid_of("rev"), Some(rev_pid));

    // status: pid, up, and for workers their service and jobs done.
    let r = inst.http.get("/SYNC-STR-REV?str=Hello,+world");
    assert_eq!((r.status, r.text().as_str()), (200, "dlrow ,olleH"));
    let st = inst.zmws(&["status"]);
    assert_eq!(st.code, Some(0), "{}", st.text());
    let line = |name: &str| st.stdout.lines().find(|l| l.split_whitespace().next() == Some(name)).unwrap_or("").to_string();
    assert!(line("broker").contains(&broker_pid.to_string()) && line("broker").contains(" up "), "{}", st.stdout);
    assert!(line("rev").contains("service STR-REV, 1 live (0 busy), 1 job(s) done"), "{}", st.stdout);
    assert!(line("nap").contains("service SLEEP"), "{}", st.stdout);

    // A crashed worker is restarted by its supervisor.
    let first = eventually("rev worker process", LONG, || children(rev_pid).into_iter().next());
    // SAFETY: `first` is the worker process our supervisor started.
    unsafe { libc::kill(first, libc::SIGKILL) };
    let second = eventually("restarted rev worker", LONG, || children(rev_pid).into_iter().find(|p| *p != first));
    assert_ne!(first, second);
    assert!(alive(rev_pid), "the supervisor itself stays");
    eventually("STR-REV served again", LONG, || {
        let r = inst.http.get("/SYNC-STR-REV?str=abc&timeout_ms=2000");
        (r.status == 200 && r.text() == "cba").then_some(())
    });
    let log = std::fs::read_to_string(inst.dir.join("logs/rev.log")).unwrap_or_default();
    assert!(log.contains("killed by signal 9") && log.contains("restarting in"), "{log}");

    // A supervisor that died (killed with its group) leaves a stale pid file.
    // SAFETY: nap_pid is the session leader of a group this test started.
    unsafe { libc::kill(-nap_pid, libc::SIGKILL) };
    eventually("nap gone", LONG, || (!alive(nap_pid) && group_members(nap_pid).is_empty()).then_some(()));
    let st = inst.zmws(&["status", "--workers"]);
    assert_eq!(st.code, Some(3), "{}", st.text());
    assert!(st.stdout.contains("stale pid file") && st.stdout.contains(&format!("PID {nap_pid} is not running")), "{}", st.stdout);
    let out = inst.zmws(&["start", "--workers"]);
    assert!(out.ok(), "{}", out.text());
    assert!(out.stdout.contains("removing stale pid file"), "{}", out.text());
    assert!(out.stdout.contains(&format!("rev already running (PID {rev_pid})")), "{}", out.text());
    let nap2 = inst.pid_of("nap").expect("nap restarted");
    assert_ne!(nap2, nap_pid);
    assert!(!out.stdout.contains("started broker"), "--workers must not touch the broker: {}", out.text());

    // stop --workers leaves the broker; stop ends it; a second stop has nothing to do.
    let out = inst.zmws(&["stop", "--workers"]);
    assert!(out.ok() && out.stdout.contains("rev stopped") && out.stdout.contains("nap stopped"), "{}", out.text());
    assert!(!out.stdout.contains("stopping broker"), "{}", out.text());
    assert!(alive(broker_pid));
    for pid in [rev_pid, nap2] {
        assert!(!alive(pid) && group_members(pid).is_empty(), "worker group {pid} left");
    }
    let st = inst.zmws(&["status", "--servers"]);
    assert_eq!(st.code, Some(0), "{}", st.text());
    let out = inst.stop();
    assert!(out.stdout.contains("broker stopped") && out.stdout.contains("no worker is running"), "{}", out.text());
    assert!(inst.processes().is_empty(), "left: {:?}", inst.processes());
    assert!(inst.pid_files().is_empty());
    let out = inst.stop();
    assert!(out.stdout.contains("broker is not running"), "{}", out.text());
    let st = inst.zmws(&["status"]);
    assert_eq!(st.code, Some(3), "{}", st.text());
}

#[test]
fn config_errors_name_the_line() {
    let dir = std::env::temp_dir().join(format!("zmws-cfgerr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        ("[broker]\nheartbeat_ms = 1000\nheartbeet_ms = 5\n", 3, "unknown field"),
        ("[http]\nendpoint = \"127.0.0.1:5580\"\nmax_body_bytes = -1\n", 3, ""),
        ("[[worker]]\nname = \"a\"\ncommand = [\"x\"]\n\n[[worker]]\nname = \"a\"\ncommand = [\"y\"]\n", 6, "used twice"),
        ("[[worker]]\nname = \"w\"\ncommand = []\n", 3, "command"),
        ("[broker]\nclient_endpoint = \"tcp://127.0.0.1\"\n", 2, "port"),
        ("[broker\n", 1, ""),
    ];
    for (i, (text, line, word)) in cases.iter().enumerate() {
        let path = dir.join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        for cmd in ["start", "stop", "status"] {
            let out = run_bounded(Command::new(ZMWS).args([cmd, "-c"]).arg(&path).current_dir(&dir), Duration::from_secs(30));
            assert!(!out.ok(), "{cmd} accepted {text:?}");
            let want = format!("bad{i}.toml:{line}:");
            assert!(out.stderr.contains(&want), "{cmd}: expected {want} in {}", out.stderr);
            assert!(out.stderr.contains(word), "{cmd}: expected '{word}' in {}", out.stderr);
        }
    }
    let out = run_bounded(Command::new(ZMWS).args(["start", "-c", "/nonexistent/zmws.toml"]), Duration::from_secs(30));
    assert!(!out.ok() && out.stderr.contains("cannot read"), "{}", out.text());
    // Nothing was started by a bad file.
    assert!(!dir.join("run").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Kills the standalone gateway if the test fails before stopping it.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn standalone_gateway_and_unreachable_broker() {
    // The broker runs without its embedded gateway; `zmws gateway` stands in front.
    let inst = small_install("gw", false, "broker_timeout_ms = 1000");
    let out = inst.start();
    assert!(!out.stdout.contains("http http"), "{}", out.text());
    let port = gateway::free_port();
    let child = Command::new(ZMWS)
        .args(["gateway", "-c"])
        .arg(&inst.config)
        .args(["--broker", &format!("tcp://127.0.0.1:{}", inst.ports.client)])
        .args(["--http-endpoint", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("zmws gateway");
    let mut guard = ChildGuard(child);
    let http = Http::new(&format!("http://127.0.0.1:{port}"));
    eventually("standalone gateway up", LONG, || std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ()));
    assert_eq!(http.get("/healthz").status, 200);
    let r = http.get("/SYNC-STR-REV?str=Hello,+world");
    assert_eq!((r.status, r.text().as_str()), (200, "dlrow ,olleH"));

    // Broker stopped: the gateway answers 503 quickly instead of hanging.
    let out = inst.zmws(&["stop", "--servers"]);
    assert!(out.stdout.contains("broker stopped"), "{}", out.text());
    for path in ["/healthz", "/SERVER-WORKERS", "/STR-REV?str=x", "/SYNC-STR-REV?str=x"] {
        let t = Instant::now();
        let r = http.get(path);
        assert_eq!(r.status, 503, "{path}: {}", r.text());
        assert!(!r.error().is_empty());
        assert!(t.elapsed() < Duration::from_secs(8), "{path} took {:?}", t.elapsed());
    }
    let m = http.get("/metrics");
    assert_eq!(m.status, 200);
    assert!(m.text().contains("zmws_up 0\n"), "{}", m.text());

    // SIGTERM ends the gateway cleanly.
    // SAFETY: the gateway is our own child process.
    unsafe { libc::kill(guard.0.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = guard.0.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "gateway ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    inst.stop();
    assert!(inst.processes().is_empty(), "left: {:?}", inst.processes());
}

#[test]
fn example_config_is_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = zmws::config::Config::load(root.join("examples/zmws.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.root, root.to_path_buf());
    assert_eq!(cfg.process.run_dir, root.join("run"));
    assert_eq!(cfg.process.log_dir, root.join("logs"));
    assert_eq!(cfg.http.endpoint, "127.0.0.1:5580");
    assert!(cfg.http.enabled && cfg.broker.enabled);
    let names: Vec<&str> = cfg.workers.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["sleep_a", "rev_a", "rev_py"]);
    let sleep = &cfg.workers[0];
    assert_eq!(sleep.argv, ["php", "examples/php/sleep.php"]);
    assert_eq!(sleep.service.as_deref(), Some("SLEEP"));
    assert_eq!(sleep.broker, "tcp://127.0.0.1:5556");
    assert_eq!(cfg.workers[1].argv, ["php", "examples/php/reverse.php"]);
    assert_eq!(
        cfg.workers[2].argv,
        ["python3", "examples/python/reverse_worker.py"],
        "the Python worker reads ZMWS_WORKER_ENDPOINT and ZMWS_HEARTBEAT_MS"
    );
    assert!(cfg.workers.iter().skip(1).all(|w| w.service.as_deref() == Some("STR-REV")));
}

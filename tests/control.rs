//! `zmws start/stop/status` and `zmws supervise`: detached processes, pid
//! files, "already running" and stale-pid handling, crash restarts, partial
//! stops, config errors with line numbers, and the standalone gateway; other
//! programs' pid files left alone, a killed supervisor taking its worker
//! along, `stop --grace-ms` reaching the worker, and a broker that cannot
//! start stopping `start`.

#[path = "gateway/mod.rs"]
mod gateway;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gateway::{alive, children, eventually, group_members, python, run_bounded, Http, Install, Ports, LONG, ZMWS};

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
    let line =
        |name: &str| st.stdout.lines().find(|l| l.split_whitespace().next() == Some(name)).unwrap_or("").to_string();
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
    assert!(
        st.stdout.contains("stale pid file") && st.stdout.contains(&format!("PID {nap_pid} is not running")),
        "{}",
        st.stdout
    );
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
        (
            "[[worker]]\nname = \"a\"\ncommand = [\"x\"]\n\n[[worker]]\nname = \"a\"\ncommand = [\"y\"]\n",
            6,
            "used twice",
        ),
        ("[[worker]]\nname = \"w\"\ncommand = []\n", 3, "command"),
        ("[broker]\nclient_endpoint = \"tcp://127.0.0.1\"\n", 2, "port"),
        ("[broker\n", 1, ""),
    ];
    for (i, (text, line, word)) in cases.iter().enumerate() {
        let path = dir.join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        for cmd in ["start", "stop", "status"] {
            let out =
                run_bounded(Command::new(ZMWS).args([cmd, "-c"]).arg(&path).current_dir(&dir), Duration::from_secs(30));
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

/// A process this test runs, killed when the test ends (even on failure).
fn spawn_guarded(cmd: &mut Command) -> ChildGuard {
    ChildGuard(cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn"))
}

/// A foreground `zmws worker` of `service` at this installation's broker.
fn foreign_worker(inst: &Install, service: &str) -> ChildGuard {
    spawn_guarded(
        Command::new(ZMWS)
            .args(["worker", "--service", service, "--heartbeat-ms", "500"])
            .args(["--broker", &format!("tcp://127.0.0.1:{}", inst.ports.worker)])
            .args(["--", "cat"]),
    )
}

/// `rev` (STR-REV) and, when `with_old`, `old` (OLD): the second entry is
/// later removed from the file to leave a running leftover behind.
fn leftover_config(p: &Ports, with_old: bool) -> String {
    let mut c = Install::base_config(p, "", "");
    c.push_str(&Install::worker_entry("rev", "STR-REV", 1, 1, &[&python(), "-S", "rev.py"]));
    if with_old {
        c.push_str(&Install::worker_entry("old", "OLD", 1, 1, &["cat"]));
    }
    c
}

#[test]
fn other_programs_pid_files_are_left_alone() {
    let inst = Install::new("foreign", |p, _| leftover_config(p, true));
    inst.start();
    let old_pid = inst.pid_of("old").expect("old pid file");
    let run = inst.dir.join("run");

    // Another zmws process (a foreground worker), a plain program, and a zmws
    // supervisor of some other pid file, each named by a pid file in run_dir.
    let zmws_worker = foreign_worker(&inst, "REV");
    let sleeper = spawn_guarded(Command::new("sleep").arg("300"));
    let other_pid_file = inst.dir.join("elsewhere.pid");
    let other_sup = spawn_guarded(
        Command::new(ZMWS)
            .args(["supervise", "--name", "x", "--pid-file"])
            .arg(&other_pid_file)
            .args(["--", "sleep", "300"]),
    );
    // A supervisor of another installation sharing this run_dir: its pid
    // file is in our run_dir, but it names another configuration.
    let other_install_sup = spawn_guarded(
        Command::new(ZMWS)
            .args(["supervise", "--name", "other_install", "--pid-file"])
            .arg(run.join("other_install.pid"))
            .arg("--config")
            .arg(inst.dir.join("another-zmws.toml"))
            .args(["--", "sleep", "300"]),
    );
    let foreign = [
        ("old_rev", zmws_worker.0.id() as i32),
        ("nginx", sleeper.0.id() as i32),
        ("x", other_sup.0.id() as i32),
        ("other_install", other_install_sup.0.id() as i32),
    ];
    for (name, pid) in foreign {
        std::fs::write(run.join(format!("{name}.pid")), format!("{pid}\n")).unwrap();
    }
    eventually("foreign processes running", LONG, || foreign.iter().all(|(_, p)| alive(*p)).then_some(()));

    // `old` leaves the configuration: still ours, listed and stopped.
    std::fs::write(&inst.config, leftover_config(&inst.ports, false)).unwrap();
    let st = inst.zmws(&["status"]);
    assert_eq!(st.code, Some(0), "foreign pid files must not change the exit status: {}", st.text());
    let old_line = st.stdout.lines().find(|l| l.split_whitespace().next() == Some("old")).unwrap_or("");
    assert!(old_line.split_whitespace().nth(1) == Some(old_pid.to_string().as_str()), "{}", st.stdout);
    assert!(old_line.contains("not in the configuration any more"), "{}", st.stdout);
    for (name, _) in foreign {
        assert!(!st.stdout.lines().any(|l| l.split_whitespace().next() == Some(name)), "{name} listed: {}", st.stdout);
    }

    let out = inst.stop();
    assert!(out.stdout.contains("old stopped") && out.stdout.contains("rev stopped"), "{}", out.text());
    assert!(!alive(old_pid), "the leftover `old` must be stopped");
    for (name, pid) in foreign {
        assert!(alive(pid), "{name} (PID {pid}) was killed by zmws stop: {}", out.text());
        assert!(run.join(format!("{name}.pid")).exists(), "{name}.pid was removed: {}", out.text());
        assert!(!out.stdout.contains(name), "{name} mentioned: {}", out.text());
    }
    // `start` leaves them alone too.
    let out = inst.zmws(&["start", "--servers"]);
    assert!(out.ok(), "{}", out.text());
    assert!(!out.stdout.contains("nginx") && !out.stdout.contains("old_rev"), "{}", out.text());
    inst.stop();
    for (name, pid) in foreign {
        assert!(alive(pid), "{name} killed");
        let _ = std::fs::remove_file(run.join(format!("{name}.pid")));
    }
    let ours: Vec<i32> = inst.processes().into_iter().filter(|p| !foreign.iter().any(|(_, f)| f == p)).collect();
    assert!(ours.is_empty(), "left: {ours:?}");
}

#[test]
fn a_killed_supervisor_takes_its_worker_along() {
    let inst = Install::new("orphan", |p, _| {
        let mut c = Install::base_config(p, "", "");
        c.push_str(&Install::worker_entry("rev", "STR-REV", 1, 2, &[&python(), "-S", "rev.py"]));
        c
    });
    inst.start();
    let sup = inst.pid_of("rev.1").expect("rev.1 pid file");
    let child = eventually("rev.1 worker process", LONG, || children(sup).into_iter().next());
    // SAFETY: `sup` is a supervisor this installation started.
    unsafe { libc::kill(sup, libc::SIGKILL) };
    eventually("the orphaned worker ends with its supervisor", LONG, || (!alive(child)).then_some(()));

    let out = inst.zmws(&["start"]);
    assert!(out.ok(), "{}", out.text());
    assert!(out.stdout.contains("started rev.1"), "{}", out.text());
    eventually("exactly 2 STR-REV workers", LONG, || {
        let st = inst.zmws(&["status", "--workers"]);
        (st.code == Some(0) && st.stdout.lines().filter(|l| l.contains("service STR-REV, 2 live")).count() == 2)
            .then_some(())
    });
    inst.stop();
    assert!(!alive(child), "the orphan outlived zmws stop");
    assert!(inst.processes().is_empty(), "left: {:?}", inst.processes());
}

#[test]
fn start_counts_only_its_own_workers() {
    // `idle` never registers; another service's worker at the same broker
    // must not make `start` believe it did.
    let inst = Install::new("count", |p, _| {
        let mut c = Install::base_config(p, "", "").replace("start_timeout_ms = 20000", "start_timeout_ms = 3000");
        c.push_str("\n[[worker]]\nname = \"idle\"\nservice = \"NEVER\"\ncommand = [\"sleep\", \"300\"]\n");
        c
    });
    let out = inst.zmws(&["start", "--servers"]);
    assert!(out.ok(), "{}", out.text());
    let _other = foreign_worker(&inst, "OTHER");
    inst.wait_workers(&inst.http, "OTHER", 1);
    let out = inst.zmws(&["start", "--workers"]);
    assert_eq!(out.code, Some(1), "{}", out.text());
    assert!(out.stdout.contains("only 0 of 1 worker(s) registered"), "{}", out.text());
    inst.stop();
    assert!(inst.processes().is_empty(), "left: {:?}", inst.processes());
}

#[test]
fn a_crash_looping_worker_is_named_by_start_and_status() {
    // `crashy` exits at once, every time (say, a missing Python module): the
    // supervisor is up, but the worker never registers.
    let inst = Install::new("crashloop", |p, _| {
        let mut c = Install::base_config(p, "", "").replace("start_timeout_ms = 20000", "start_timeout_ms = 3000");
        c.push_str(
            "\n[[worker]]\nname = \"crashy\"\nservice = \"CRASHY\"\n\
             command = [\"sh\", \"-c\", \"echo 'no module named zmws' >&2; exit 7\"]\n",
        );
        c
    });
    let out = inst.zmws(&["start"]);
    assert_eq!(out.code, Some(1), "{}", out.text());
    assert!(out.stdout.contains("only 0 of 1 worker(s) registered"), "{}", out.text());
    assert!(out.stdout.contains("crashy: its worker ended (exit status 7) and is being restarted"), "{}", out.text());
    assert!(out.stdout.contains("no module named zmws"), "the log's last lines are shown:\n{}", out.text());

    let st = inst.zmws(&["status"]);
    assert_eq!(st.code, Some(3), "a crash-looping worker is not up:\n{}", st.text());
    let line = st.stdout.lines().find(|l| l.starts_with("crashy")).unwrap_or_default().to_string();
    assert!(line.contains(" restarting ") && line.contains("last ended (exit status 7)"), "{}", st.text());
    assert!(line.contains("restart(s)") && line.contains("crashy.log"), "{}", st.text());

    inst.stop();
    assert!(inst.processes().is_empty(), "left: {:?}", inst.processes());
    let run = inst.dir.join("run");
    let left: Vec<_> =
        std::fs::read_dir(&run).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "stop leaves nothing in run/: {left:?}");
}

#[test]
fn stop_grace_ms_reaches_the_worker() {
    // Stop grace in the file: 1500 ms; each job takes 3 s.
    let inst = Install::new("grace", |p, _| {
        let mut c = Install::base_config(p, "", "");
        c.push_str(&Install::worker_entry(
            "slow",
            "SLOW",
            1,
            1,
            &["sh", "-c", "cat >/dev/null; sleep 3; printf slow-done"],
        ));
        c
    });
    inst.start();
    let busy = || {
        let r = inst.http.get("/SERVER-WORKERS");
        (r.status == 200 && r.json().as_array()?.iter().any(|w| w["service"] == "SLOW" && w["state"] == "busy"))
            .then_some(())
    };

    // A longer grace than the file's: the job finishes and is answered.
    let base = inst.http.base.clone();
    let sync = std::thread::spawn(move || Http::new(&base).get("/SYNC-SLOW?x=1&timeout_ms=15000"));
    eventually("SLOW job running", LONG, busy);
    let out = inst.zmws(&["stop", "--workers", "--grace-ms", "8000"]);
    assert!(out.ok() && out.stdout.contains("slow stopped"), "{}", out.text());
    let r = sync.join().expect("sync thread");
    assert_eq!((r.status, r.text().as_str()), (200, "slow-done"), "the worker was not given 8000 ms");
    let log = std::fs::read_to_string(inst.dir.join("logs/slow.log")).unwrap_or_default();
    assert!(log.contains("grace_ms=8000") && !log.contains("did not stop within"), "{log}");

    // A shorter one: the supervisor SIGKILLs its worker after 300 ms.
    let out = inst.zmws(&["start", "--workers"]);
    assert!(out.ok(), "{}", out.text());
    let base = inst.http.base.clone();
    let sync = std::thread::spawn(move || Http::new(&base).get("/SYNC-SLOW?x=2&timeout_ms=1000"));
    eventually("SLOW job running", LONG, busy);
    let out = inst.zmws(&["stop", "--workers", "--grace-ms", "300"]);
    assert!(out.ok() && out.stdout.contains("slow stopped"), "{}", out.text());
    let log = std::fs::read_to_string(inst.dir.join("logs/slow.log")).unwrap_or_default();
    assert!(log.contains("worker did not stop within 300 ms"), "{log}");
    let _ = sync.join();
    inst.stop();
    assert!(inst.processes().is_empty(), "left: {:?}", inst.processes());
}

#[test]
fn a_broker_that_cannot_start_stops_start() {
    let inst = small_install("brokerfail", true, "");
    // Another program holds the HTTP port: the broker exits at once.
    let _holder = std::net::TcpListener::bind(("127.0.0.1", inst.ports.http)).expect("hold the http port");
    let out = inst.zmws(&["start"]);
    assert_eq!(out.code, Some(1), "{}", out.text());
    assert!(out.stdout.contains("broker exited at once"), "{}", out.text());
    assert!(out.stdout.contains("not starting the workers"), "{}", out.text());
    assert!(!out.stdout.contains("started rev") && !out.stdout.contains("started nap"), "{}", out.text());
    assert!(inst.pid_files().is_empty(), "{:?}", inst.pid_files());
    assert!(inst.processes().is_empty(), "left: {:?}", inst.processes());
}

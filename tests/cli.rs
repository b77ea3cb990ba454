//! The `zmws` binary end to end: a foreground broker on free ports, command
//! workers (`zmws worker -- rev`), and the client subcommands; SIGTERM stops
//! broker and worker with exit status 0.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Three distinct ports that were free a moment ago.
fn three_ports() -> (u16, u16, u16) {
    eventually("three distinct free ports", LONG, || {
        let (a, b, c) = (free_port(), free_port(), free_port());
        (a != b && b != c && a != c).then_some((a, b, c))
    })
}

fn zmws(args: &[&str]) -> Output {
    Command::new(zmws_bin()).args(["--log-level", "warn"]).args(args).stdin(Stdio::null()).output().expect("run zmws")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "zmws failed ({}): stdout {:?} stderr {:?}", o.status, stdout(&o), stderr(&o));
    stdout(&o)
}

#[test]
fn zmws_binary_broker_worker_call_submit_status_and_sigterm() {
    let (pc, pw, pn) = three_ports();
    let client_ep = format!("tcp://127.0.0.1:{pc}");
    let worker_ep = format!("tcp://127.0.0.1:{pw}");
    let news_ep = format!("tcp://127.0.0.1:{pn}");
    let hb = "200";
    let broker = Command::new(zmws_bin())
        .args([
            "--log-level",
            "warn",
            "broker",
            "--no-http",
            "--no-persist",
            "--client-endpoint",
            &client_ep,
            "--worker-endpoint",
            &worker_ep,
        ])
        .args(["--news-endpoint", &news_ep, "--heartbeat-ms", hb, "--liveness", "3"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn zmws broker");
    let mut broker = ChildGuard::new(broker);

    // The broker is up when it answers an MMI request.
    let mut c = eventually("the broker answers", LONG, || {
        assert!(broker.0.as_mut().unwrap().try_wait().unwrap().is_none(), "broker exited early");
        let mut c = zmws::Client::connect(&client_ep).ok()?;
        c.set_request_timeout(Duration::from_millis(200));
        c.service_available("REV").ok().map(|_| c)
    });
    c.set_request_timeout(Duration::from_secs(5));

    let spawn_worker = |service: &str, cmd: &[&str]| {
        let child = Command::new(zmws_bin())
            .args([
                "--log-level",
                "warn",
                "worker",
                "--service",
                service,
                "--broker",
                &worker_ep,
                "--heartbeat-ms",
                hb,
                "--",
            ])
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn zmws worker");
        ChildGuard::new(child)
    };
    let mut rev = spawn_worker("REV", &["rev"]);
    let failing = spawn_worker("FAILS", &["sh", "-c", "echo 'it broke' >&2; exit 3"]);
    wait_workers(&mut c, "REV", 1);
    wait_workers(&mut c, "FAILS", 1);

    // zmws call prints the result.
    let out = ok(zmws(&["call", "REV", "hello", "--broker", &client_ep]));
    assert_eq!(out.trim_end(), "olleh");

    // Payload from stdin with "-"; the broker from $ZMWS_BROKER.
    let mut child = Command::new(zmws_bin())
        .args(["--log-level", "warn", "call", "REV", "-"])
        .env("ZMWS_BROKER", &client_ep)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"from stdin").unwrap();
    let out = ok(child.wait_with_output().unwrap());
    assert_eq!(out.trim_end(), "nidts morf");

    // zmws submit prints a job id; status, result, jobs, workers.
    let id = ok(zmws(&["submit", "REV", "abc", "--broker", &client_ep])).trim().to_string();
    assert!(is_job_id(id.as_bytes()), "submit prints a job id: {id:?}");
    let status: Value = eventually("submitted job completes", LONG, || {
        let v: Value =
            serde_json::from_str(&ok(zmws(&["status", &id, "--broker", &client_ep]))).expect("status prints JSON");
        (v["state"] == "complete").then_some(v)
    });
    assert_eq!(status["job_id"], id.as_str());
    assert_eq!(status["service"], "REV");
    assert_eq!(status["attempts"], 1);
    let result = ok(zmws(&["result", &id, "--broker", &client_ep]));
    assert_eq!(result.trim_end(), "cba");
    let hist: Value = serde_json::from_str(&ok(zmws(&["jobs", "--history", "--broker", &client_ep]))).unwrap();
    assert!(hist.as_array().unwrap().iter().any(|j| j["job_id"] == id.as_str()), "{hist}");
    let queued: Value = serde_json::from_str(&ok(zmws(&["jobs", "--broker", &client_ep]))).unwrap();
    assert_eq!(queued, Value::Array(vec![]));
    let workers: Value = serde_json::from_str(&ok(zmws(&["workers", "--broker", &client_ep]))).unwrap();
    let services: Vec<&str> = workers.as_array().unwrap().iter().map(|w| w["service"].as_str().unwrap()).collect();
    assert!(services.contains(&"REV") && services.contains(&"FAILS"), "{workers}");

    // Failures: exit status is not 0 and the reason is on stderr.
    let o = zmws(&["call", "FAILS", "x", "--broker", &client_ep]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("it broke"), "the command's stderr is the failure reason: {:?}", stderr(&o));
    let o = zmws(&["call", "NOPE", "x", "--broker", &client_ep]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("NOPE"), "{:?}", stderr(&o));
    let o = zmws(&["status", "0123456789abcdef0123456789abcdef", "--broker", &client_ep]);
    assert!(!o.status.success());

    // SIGTERM: the worker and the broker stop with exit status 0.
    drop(failing);
    rev.signal(libc::SIGTERM);
    let st = rev.wait_timeout(LONG).expect("worker exits after SIGTERM");
    assert!(st.success(), "worker exit status after SIGTERM: {st}");
    broker.signal(libc::SIGTERM);
    let st = broker.wait_timeout(LONG).expect("broker exits after SIGTERM");
    let mut err = String::new();
    if let Some(mut e) = broker.0.as_mut().unwrap().stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(st.success(), "broker exit status after SIGTERM: {st}; stderr: {err}");
    assert!(err.contains(&client_ep), "the broker names its endpoints on stderr: {err}");
}

#[test]
fn zmws_broker_refuses_a_port_in_use() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = format!("tcp://127.0.0.1:{}", l.local_addr().unwrap().port());
    let (pw, pn, _) = three_ports();
    let child = Command::new(zmws_bin())
        .args(["--log-level", "warn", "broker", "--no-http", "--no-persist", "--client-endpoint", &busy])
        .args([
            "--worker-endpoint",
            &format!("tcp://127.0.0.1:{pw}"),
            "--news-endpoint",
            &format!("tcp://127.0.0.1:{pn}"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut g = ChildGuard::new(child);
    let st = g.wait_timeout(LONG).expect("the broker exits instead of running");
    assert!(!st.success(), "binding a busy port fails");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut g.0.as_mut().unwrap().stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("cannot bind"), "{err:?}");
    drop(l);
}

#[test]
fn bad_flags_and_values_are_refused_before_anything_starts() {
    // Usage errors: 64 (EX_USAGE), not clap's 2, which reads as "timeout".
    for args in [&["submit", "REV", "--bogus"][..], &["worker", "--", "rev"], &["jobs", "--queued", "--active"]] {
        let o = zmws(args);
        assert_eq!(o.status.code(), Some(64), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("Usage:"), "{args:?}: {}", stderr(&o));
    }
    assert_eq!(zmws(&["--version"]).status.code(), Some(0));
    // Values outside the config file's ranges: invalid argument (exit 4), named.
    for (args, says) in [
        (
            &["broker", "--no-http", "--no-persist", "--heartbeat-ms", "0"][..],
            "--heartbeat-ms must be between 10 and 3600000 (got 0)",
        ),
        (&["broker", "--no-http", "--no-persist", "--liveness", "0"], "--liveness must be between 1 and 1000 (got 0)"),
        (
            &["broker", "--no-http", "--no-persist", "--max-attempts", "0"],
            "--max-attempts must be between 1 and 1000 (got 0)",
        ),
        (&["broker", "--no-http", "--no-persist", "--job-timeout-ms", "0"], "--job-timeout-ms must be between 1 and"),
        (
            &["worker", "--service", "X", "--concurrency", "0", "--", "cat"],
            "--concurrency must be between 1 and 100000 (got 0)",
        ),
        (
            &["worker", "--service", "X", "--heartbeat-ms", "5", "--", "cat"],
            "--heartbeat-ms must be between 10 and 3600000 (got 5)",
        ),
        (&["broker", "--no-persist", "--http-max-body", "0"], "--http-max-body must be between 1 and"),
        (&["gateway", "--http-timeout-ms", "0"], "--http-timeout-ms must be between 1 and"),
        // A command that cannot run is refused before the worker registers.
        (
            &["worker", "--service", "X", "--", "/nonexistent/zmws-test-cmd"],
            "cannot run /nonexistent/zmws-test-cmd: no such executable file",
        ),
        (
            &["worker", "--service", "X", "--", "zmws-no-such-program"],
            "cannot run zmws-no-such-program: not found in PATH",
        ),
    ] {
        let o = zmws(args);
        assert_eq!(o.status.code(), Some(4), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
    }
}

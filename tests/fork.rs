//! fork(): handles inherited by a child are refused with a clear error and
//! dropping them there does not hang (their threads exist only in the
//! parent); the parent's handles keep working. The only test of this binary,
//! so no other test thread is in the middle of anything when it forks.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use zmws::{Broker, Client, Error, Worker};

/// In the child: checks every inherited handle, drops them, and exits with
/// the number of failed checks (printed to stderr).
fn child(
    client: &mut Client,
    idle_worker: Worker,
    running: &Arc<Worker>,
    broker: zmws::BrokerHandle,
    client_ep: &str,
) -> ! {
    let mut failures: Vec<String> = Vec::new();
    let mut expect_fork_error = |what: &str, r: zmws::Result<()>| match r {
        Err(Error::Closed(m)) if m.contains("fork") && m.contains(what) => {}
        other => failures.push(format!("{what}: expected Closed naming fork(), got {other:?}")),
    };
    expect_fork_error("Client", client.submit("forked", b"x").map(|_| ()));
    expect_fork_error("Client", client.workers().map(|_| ()));
    expect_fork_error("Worker", idle_worker.next_job(Duration::from_millis(10)).map(|_| ()));
    expect_fork_error("Worker", running.complete("01a209f6ba260000cd58c5ac4a52c5e1", b"late"));
    expect_fork_error("Worker", idle_worker.run(|_| Ok(Vec::new())));
    expect_fork_error("Broker", broker.stop());
    // Releasing inherited handles must not block (the test's parent kills
    // us after 30 s and fails).
    drop(idle_worker);
    // A handle made in the child works there.
    match Client::connect(client_ep).and_then(|mut c| c.call("forked", b"from the child", Duration::from_secs(10))) {
        Ok(r) if r == b"from the child" => {}
        other => failures.push(format!("a new Client in the child: {other:?}")),
    }
    for f in &failures {
        eprintln!("forked child: {f}");
    }
    // SAFETY: ends the child without running the test harness's exit path.
    unsafe { libc::_exit(failures.len().min(100) as i32) }
}

#[test]
fn a_forked_child_is_refused_clearly_and_releases_nothing() {
    // Durable: the child also inherits the job store and its lock.
    let data_dir = std::env::temp_dir().join(format!("zmws-fork-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let durable = || zmws::BrokerConfig { data_dir: Some(data_dir.clone()), ..config() };
    let broker = Broker::bind(durable()).expect("bind").start().expect("start");
    let (client_ep, worker_ep) = (broker.endpoints().client.clone(), broker.endpoints().worker.clone());
    let running = Arc::new(Worker::connect(&worker_ep, "forked").expect("worker"));
    let w = running.clone();
    let serving = std::thread::spawn(move || w.run(|job| Ok(job.payload.clone())));
    let idle_worker = Worker::connect(&worker_ep, "idle").expect("idle worker");
    let mut client = Client::connect(&client_ep).expect("client");
    wait_workers(&mut client, "forked", 1);
    assert_eq!(client.call("forked", b"before", Duration::from_secs(10)).expect("call before fork"), b"before");

    // SAFETY: the child only runs zmws calls that return at once and exits
    // with _exit; allocation after fork is safe with glibc.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        child(&mut client, idle_worker, &running, broker, &client_ep);
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut status = 0;
    loop {
        // SAFETY: waiting for the child we forked.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if Instant::now() > deadline {
            // SAFETY: our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("the forked child hung (releasing inherited handles?)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(libc::WIFEXITED(status), "child ended by a signal: status {status}");
    assert_eq!(libc::WEXITSTATUS(status), 0, "checks failed in the forked child (see stderr)");

    // The parent's handles are untouched.
    assert_eq!(client.call("forked", b"after", Duration::from_secs(10)).expect("call after fork"), b"after");
    drop(idle_worker);
    running.stop();
    serving.join().expect("worker thread").expect("worker loop");
    drop(client);

    // A child that outlives the parent's broker does not keep its job store
    // locked: a new broker opens the directory while the child still runs.
    // SAFETY: the child only sleeps and leaves with _exit.
    let sleeper = unsafe { libc::fork() };
    assert!(sleeper >= 0, "fork failed");
    if sleeper == 0 {
        std::thread::sleep(Duration::from_secs(20));
        // SAFETY: ends the child without the harness's exit path.
        unsafe { libc::_exit(0) }
    }
    broker.stop().expect("broker stops cleanly");
    let reopened = Broker::bind(durable());
    // SAFETY: our own child.
    unsafe {
        libc::kill(sleeper, libc::SIGKILL);
        libc::waitpid(sleeper, &mut status, 0);
    }
    let reopened = reopened.expect("the job store is free once the parent's broker stopped, forked child or not");
    drop(reopened);
    let _ = std::fs::remove_dir_all(&data_dir);
}

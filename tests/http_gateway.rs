//! The HTTP gateway through a real installation: `zmws start -c` with a
//! temporary config on free ports, the seed's walkthrough, every route and
//! error status, 200 concurrent SYNC requests, metrics, the bearer token,
//! and `zmws stop` leaving no process behind.

#[path = "gateway/mod.rs"]
mod gateway;

use std::time::{Duration, Instant};

use gateway::{eventually, python, Install, LONG};
use serde_json::{json, Value};

fn walkthrough_install() -> Install {
    Install::new("http", |p, _| {
        let py = python();
        let mut c = Install::base_config(p, "", "max_body_bytes = 65536");
        c.push_str(&Install::worker_entry("rev", "STR-REV", 4, 2, &[&py, "-S", "rev.py"]));
        c.push_str(&Install::worker_entry("sleep", "SLEEP", 2, 1, &["sleep", "1"]));
        c.push_str(&Install::worker_entry("echo", "ECHO", 4, 1, &["cat"]));
        c.push_str(&Install::worker_entry("fail", "FAIL", 1, 1, &["sh", "fail.sh"]));
        c.push_str(&Install::worker_entry("slow", "SLOW", 4, 1, &["sleep", "10"]));
        c
    })
}

fn job_id(r: &gateway::Resp) -> String {
    let id = r.json()["job_id"].as_str().unwrap_or_else(|| panic!("no job_id in {}", r.text())).to_string();
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    id
}

/// One `GET` over a plain socket (for heads ureq will not send): status and body.
fn raw_get(base: &str, target: &str, extra_headers: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s.set_write_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let head = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra_headers}\r\n");
    s.write_all(head.as_bytes()).expect("send");
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).expect("read");
    let text = String::from_utf8_lossy(&reply).into_owned();
    let status =
        text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status line: {text:.200}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

#[test]
fn seed_walkthrough_routes_errors_concurrency_and_metrics() {
    let inst = walkthrough_install();
    let out = inst.start();
    assert!(out.stdout.contains("started broker"), "{}", out.text());
    assert!(out.stdout.contains("6 worker(s) registered"), "{}", out.text());
    let http = inst.http.clone();

    // --- the seed's walkthrough -------------------------------------------
    let r = http.get("/SERVER-WORKERS");
    assert_eq!(r.status, 200);
    assert!(r.content_type.starts_with("application/json"));
    let workers = r.json();
    let services: Vec<&str> = workers.as_array().unwrap().iter().filter_map(|w| w["service"].as_str()).collect();
    for s in ["STR-REV", "SLEEP", "ECHO", "FAIL", "SLOW"] {
        assert!(services.contains(&s), "{s} missing from {workers}");
    }
    assert_eq!(services.iter().filter(|s| **s == "STR-REV").count(), 2);

    let r = http.get("/SLEEP");
    assert_eq!(r.status, 202, "{}", r.text());
    let sleep_id = job_id(&r);
    assert_eq!(r.json()["service"], "SLEEP");
    assert_eq!(r.header("location"), Some(format!("/jobs/{sleep_id}").as_str()));

    let r = http.get("/SYNC-STR-REV?str=Hello,+world");
    assert_eq!((r.status, r.text().as_str()), (200, "dlrow ,olleH"));
    assert!(r.content_type.starts_with("text/plain"), "{}", r.content_type);
    let done_id = r.header("x-zmws-job-id").expect("job id header").to_string();
    let r = http.get("/SYNC:STR-REV?str=abc");
    assert_eq!((r.status, r.text().as_str()), (200, "cba"));

    // Idempotency-Key: the same key gives the same job, another key a new one.
    let a = http.post_keyed("/SLEEP", "order-1");
    assert_eq!(a.status, 202, "{}", a.text());
    let b = http.post_keyed("/SLEEP", "order-1");
    assert_eq!(job_id(&a), job_id(&b), "same key, same job");
    let c = http.post_keyed("/SLEEP", "order-2");
    assert_ne!(job_id(&a), job_id(&c));

    // Async with the seed's parameters, then its status and result.
    let r = http.get("/STR-REV?str=Hello,+world");
    assert_eq!(r.status, 202);
    let rev_id = job_id(&r);
    let result = eventually("async STR-REV result", LONG, || {
        let r = http.get(&format!("/jobs/{rev_id}/result"));
        match r.status {
            200 => Some(r.text()),
            202 => None,
            other => panic!("unexpected {other}: {}", r.text()),
        }
    });
    assert_eq!(result, "dlrow ,olleH");
    let r = http.get(&format!("/jobs/{rev_id}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["state"], "complete");
    assert_eq!(r.json()["service"], "STR-REV");
    let st = eventually("SLEEP job done", LONG, || {
        let v = http.get(&format!("/jobs/{sleep_id}")).json();
        (v["state"] == "complete").then_some(v)
    });
    assert_eq!(st["attempts"], 1);

    // --- parameters and content types ---------------------------------------
    let r = http.get("/SYNC-ECHO?a=1&a=2&b=x+y%21&timeout_ms=5000");
    assert_eq!(r.status, 200);
    assert!(r.content_type.starts_with("application/json"));
    assert_eq!(r.json(), json!({"a": ["1", "2"], "b": "x y!"}));
    let r = http.get("/SYNC-ECHO");
    assert_eq!(r.json(), json!({}));
    let r = http.post("/SYNC-ECHO", "application/json", br#"{"n":[1,2,{"k":null}]}"#);
    assert_eq!((r.status, r.text().as_str()), (200, r#"{"n":[1,2,{"k":null}]}"#));
    assert!(r.content_type.starts_with("application/json"));
    let bin = [0xffu8, 0x00, 0x80, 0x7f];
    let r = http.post("/SYNC-ECHO", "application/octet-stream", &bin);
    assert_eq!((r.status, r.body.as_slice()), (200, &bin[..]));
    assert_eq!(r.content_type, "application/octet-stream");
    let r = http.post("/SYNC-ECHO?ignored=1", "text/plain", b"plain words");
    assert_eq!((r.status, r.text().as_str()), (200, "plain words"));
    assert!(r.content_type.starts_with("text/plain"));

    // --- every error status ----------------------------------------------------
    // 400
    for path in ["/SYNC-ECHO?timeout_ms=abc", "/SYNC-ECHO?timeout_ms=0", "/jobs/xyz", "/jobs/xyz/result", "/SYNC-"] {
        let r = http.get(path);
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert!(!r.error().is_empty());
    }
    assert_eq!(http.delete("/jobs/not-an-id").status, 400);
    let r = http.post("/ECHO", "application/json", b"{not json");
    assert_eq!(r.status, 400);
    assert!(r.error().contains("JSON"), "{}", r.text());
    // A JSON body is UTF-8 throughout, inside strings and keys too (serde_json's
    // IgnoredAny parse alone skips string bytes unchecked and let these reach
    // the worker): 400, and no job is created.
    let echo_submitted = |http: &gateway::Http| http.metric("zmws_jobs_submitted_total{service=\"ECHO\"}");
    let before = echo_submitted(&http);
    let mut big = br#"{"a":""#.to_vec();
    big.extend("é".repeat(20_000).as_bytes());
    big.extend(br#"","#);
    let at = big.len() + 2;
    big.extend(b"\"b\xe9\":1}");
    let bad_utf8: [(&str, &str, &[u8], usize); 6] = [
        ("/SYNC-ECHO", "application/json", b"\"\xff\"", 1),
        ("/ECHO", "application/json", b"\"\xff\"", 1),
        ("/SYNC-ECHO", "application/vnd.api+json", b"{\"\xff\":1}", 2),
        ("/SYNC-ECHO", "application/json; charset=utf-8", b"[\"\xc0\xaf\"]", 2), // overlong '/'
        ("/SYNC-ECHO", "application/json", b"\"\xed\xa0\x80\"", 1),              // a UTF-16 surrogate
        ("/SYNC-ECHO", "application/json", &big, at),
    ];
    for (path, ct, body, at) in bad_utf8 {
        let r = http.post(path, ct, body);
        assert_eq!(
            r.status,
            400,
            "{path} {ct} {:?}: {}",
            String::from_utf8_lossy(&body[..body.len().min(40)]),
            r.text()
        );
        assert_eq!(r.error(), format!("the body is not valid JSON: invalid UTF-8 at byte {at}"), "{}", r.text());
        assert_eq!(r.json()["service"], "ECHO", "{}", r.text());
    }
    assert_eq!(echo_submitted(&http), before, "a body with invalid UTF-8 reached the broker");
    let r = http.post("/SYNC-ECHO", "application/json", "{\"s\":\"é☃😀\"}".as_bytes());
    assert_eq!((r.status, r.text().as_str()), (200, "{\"s\":\"é☃😀\"}"));
    assert!(r.content_type.starts_with("application/json"), "{}", r.content_type);
    // The same rule labels results: a JSON-looking result that is not UTF-8 is bytes.
    let r = http.post("/SYNC-ECHO", "application/octet-stream", b"\"\xff\"");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"\"\xff\""[..]));
    assert_eq!(r.content_type, "application/octet-stream");
    // 404
    let r = http.get("/NOPE");
    assert_eq!(r.status, 404);
    assert!(r.error().contains("NOPE"), "{}", r.text());
    assert_eq!(http.get("/SYNC-NOPE?x=1").status, 404);
    assert_eq!(http.get("/jobs/0123456789abcdef0123456789abcdef").status, 404);
    assert_eq!(http.get("/jobs/0123456789abcdef0123456789abcdef/result").status, 404);
    assert_eq!(http.delete("/jobs/0123456789abcdef0123456789abcdef").status, 404);
    assert!(!http.get("/a/b/c").error().is_empty());
    assert_eq!(http.get("/a/b/c").status, 404);
    assert_eq!(http.get("/SERVER-NOPE").status, 404);
    // Only `healthz` and `metrics` are route names, and only as sent: `jobs`,
    // `SYNC-healthz`, a percent-encoded `healthz` and lowercase `server-…` are
    // services (here never offered: 404 naming the service, not "no route").
    for (path, svc) in [
        ("/jobs", "jobs"),
        ("/SYNC-jobs", "jobs"),
        ("/SYNC:healthz", "healthz"),
        ("/SYNC-metrics", "metrics"),
        ("/%68ealthz", "healthz"),
        ("/HEALTHZ", "HEALTHZ"),
        ("/server-workers", "server-workers"),
    ] {
        let r = http.get(path);
        assert_eq!((r.status, r.json()["service"].clone()), (404, json!(svc)), "{path}: {}", r.text());
        assert!(r.error().contains("no worker has ever offered"), "{path}: {}", r.text());
    }
    assert_eq!(http.post("/healthz", "application/json", b"{}").status, 405);
    // 405
    let r = http.put("/STR-REV");
    assert_eq!(r.status, 405);
    assert!(!r.error().is_empty());
    assert_eq!(r.header("allow"), Some("GET,POST"));
    for (path, allow) in
        [("/healthz", "GET,HEAD"), ("/metrics", "GET,HEAD"), (&*format!("/jobs/{done_id}"), "GET,HEAD,DELETE")]
    {
        let r = http.put(path);
        assert_eq!((r.status, r.header("allow")), (405, Some(allow)), "{path}");
        assert!(!r.error().is_empty(), "{path}");
    }

    // --- HEAD: 405 where a GET submits or runs a job, a bodiless GET elsewhere ---
    let submitted = |http: &gateway::Http| http.metric("zmws_jobs_submitted_total{service=\"ECHO\"}");
    let before = submitted(&http);
    assert!(before >= 1.0, "ECHO has run jobs already");
    for path in ["/ECHO", "/ECHO?q=1", "/SYNC-ECHO?q=1", "/SYNC:ECHO", "/SYNC%2DECHO?q=1", "/NOPE"] {
        let r = http.head(path);
        assert_eq!(r.status, 405, "HEAD {path}");
        assert_eq!(r.header("allow"), Some("GET,POST"), "HEAD {path}");
        assert!(r.content_type.starts_with("application/json"), "HEAD {path}: {}", r.content_type);
        assert!(r.body.is_empty(), "HEAD {path}");
    }
    assert_eq!(submitted(&http), before, "a HEAD request created a job");
    for path in [
        "/healthz".to_string(),
        "/metrics".to_string(),
        "/SERVER-WORKERS".to_string(),
        "/SERVER-HIST".to_string(),
        format!("/jobs/{done_id}"),
        format!("/jobs/{done_id}/result"),
    ] {
        let r = http.head(&path);
        assert_eq!(r.status, 200, "HEAD {path}");
        assert!(r.body.is_empty(), "HEAD {path}");
        assert!(r.header("allow").is_none(), "HEAD {path}");
    }
    assert_eq!(http.head("/jobs/0123456789abcdef0123456789abcdef").status, 404);
    assert_eq!(http.get(&format!("/jobs/{done_id}")).json()["state"], "complete", "HEAD changed nothing");
    // 414 and 431 come from hyper, before the routes, with an empty body
    // (docs/HTTP.md). ureq refuses such URIs itself, so these go over a raw socket.
    let target = |n: usize| format!("/NOPE?q={}", "a".repeat(n - "/NOPE?q=".len()));
    let (status, body) = raw_get(&http.base, &target(65_534), "");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("\"error\""), "{body}");
    for n in [65_535, 100_000] {
        assert_eq!(raw_get(&http.base, &target(n), ""), (414, String::new()), "target of {n} bytes");
    }
    let many: String = (0..101).map(|i| format!("X-H{i}: 1\r\n")).collect();
    assert_eq!(raw_get(&http.base, "/healthz", &many), (431, String::new()));
    assert_eq!(submitted(&http), before, "an over-long request created a job");
    // 413 (repeated, and larger than the socket buffers: the answer must
    // reach the client, not be lost to a connection reset)
    for size in [70_000usize, 3_000_000].iter().cycle().take(12) {
        let r = http.post("/ECHO", "application/octet-stream", &vec![b'x'; *size]);
        assert_eq!(r.status, 413, "{}", r.text());
        assert!(r.error().contains("65536"), "{}", r.text());
    }
    // 502: the worker failed the job; the reason and the job id come back.
    let r = http.get("/SYNC-FAIL?x=1");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.error().contains("boom"), "{}", r.text());
    let failed_id = job_id(&r);
    let r = http.get(&format!("/jobs/{failed_id}/result"));
    assert_eq!((r.status, r.json()["state"].clone()), (502, json!("failed")));
    // 504: past ?timeout_ms=
    let t = Instant::now();
    let r = http.get("/SYNC-SLOW?timeout_ms=300");
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(t.elapsed() < Duration::from_secs(5), "504 took {:?}", t.elapsed());
    assert_eq!(r.json()["timeout_ms"], 300);
    // Pending result (202), cancel (200), cancelled result (410), cancel of a finished job (409).
    let slow_id = job_id(&http.get("/SLOW"));
    let r = http.get(&format!("/jobs/{slow_id}/result"));
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(["queued", "active"].contains(&r.json()["state"].as_str().unwrap_or("")), "{}", r.text());
    let r = http.delete(&format!("/jobs/{slow_id}"));
    assert_eq!((r.status, r.json()["state"].clone()), (200, json!("cancelled")));
    assert_eq!(http.get(&format!("/jobs/{slow_id}")).json()["state"], "cancelled");
    // Cancel is idempotent: cancelling a cancelled job answers 200 again.
    let r = http.delete(&format!("/jobs/{slow_id}"));
    assert_eq!(
        (r.status, r.json()["state"].clone(), r.json()["job_id"].clone()),
        (200, json!("cancelled"), json!(slow_id))
    );
    assert_eq!(http.get(&format!("/jobs/{slow_id}/result")).status, 410);
    let r = http.delete(&format!("/jobs/{done_id}"));
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.error().contains("already finished"), "{}", r.text());
    let r = http.delete(&format!("/jobs/{failed_id}"));
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(http.get(&format!("/jobs/{done_id}")).json()["state"], "complete");

    // --- the seed's server commands ----------------------------------------------
    for path in ["/SERVER-JOBS", "/SERVER-ACTIVE", "/SERVER-HIST", "/SERVER-SERVICES"] {
        let r = http.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert!(r.json().is_array(), "{path}: {}", r.text());
    }
    let hist = http.get("/SERVER-HIST").json();
    assert!(hist.as_array().unwrap().iter().any(|j| j["job_id"] == done_id.as_str()), "{hist}");
    let h = http.get("/healthz");
    assert_eq!((h.status, h.json()["status"].clone()), (200, json!("ok")));

    // --- 200 concurrent SYNC requests, then the metrics moved ------------------
    let completed_before = http.metric("zmws_jobs_completed_total{service=\"STR-REV\"}");
    let latency_before = http.metric("zmws_job_latency_seconds_count{service=\"STR-REV\"}");
    assert_eq!(http.metric("zmws_up"), 1.0);
    assert_eq!(http.metric("zmws_workers{service=\"STR-REV\"}"), 2.0);
    let t = Instant::now();
    let threads: Vec<_> = (0..200)
        .map(|i| {
            let http = http.clone();
            std::thread::spawn(move || {
                let r = http.get(&format!("/SYNC-STR-REV?str=message+{i:03}&timeout_ms=90000"));
                (i, r.status, r.text())
            })
        })
        .collect();
    for t in threads {
        let (i, status, text) = t.join().expect("request thread");
        let want: String = format!("message {i:03}").chars().rev().collect();
        assert_eq!((status, text), (200, want), "request {i}");
    }
    eprintln!("200 concurrent SYNC requests took {:?}", t.elapsed());
    let completed_after = http.metric("zmws_jobs_completed_total{service=\"STR-REV\"}");
    assert!(completed_after >= completed_before + 200.0, "{completed_before} -> {completed_after}");
    let latency_after = http.metric("zmws_job_latency_seconds_count{service=\"STR-REV\"}");
    assert!(latency_after >= latency_before + 200.0, "{latency_before} -> {latency_after}");
    assert!(http.metric("zmws_job_latency_seconds_bucket{service=\"STR-REV\",le=\"+Inf\"}") >= latency_after);
    assert!(http.metric("zmws_jobs_failed_total{service=\"FAIL\"}") >= 1.0);
    assert!(http.metric("zmws_jobs_cancelled_total{service=\"SLOW\"}") >= 1.0);
    assert!(http.metric("zmws_jobs_submitted_total{service=\"SLEEP\"}") >= 1.0);
    assert!(http.metric("zmws_http_requests_total{code=\"200\"}") >= 200.0);
    assert_eq!(http.metric("zmws_http_sync_inflight"), 0.0);
    let text = http.get("/metrics").text();
    for name in ["zmws_queue_depth", "zmws_jobs_active", "zmws_workers_busy", "zmws_jobs_retried_total"] {
        assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing");
    }

    // --- 1,000 SYNC requests held at once by a handful of threads ---------------------
    // SLOW's worker is busy, so these wait in its queue until their timeout.
    let broker_pid = inst.pid_of("broker").expect("broker pid");
    let threads: Vec<_> = (0..1000)
        .map(|_| {
            let http = http.clone();
            std::thread::spawn(move || http.get("/SYNC-SLOW?timeout_ms=8000").status)
        })
        .collect();
    let held = eventually("1000 SYNC requests in flight", LONG, || {
        let n = http.metric("zmws_http_sync_inflight");
        (n >= 1000.0).then_some(n)
    });
    let broker_threads = gateway::thread_count(broker_pid);
    eprintln!("{held} SYNC requests held by a broker process with {broker_threads} threads");
    assert!(broker_threads > 0 && broker_threads < 40, "{broker_threads} threads");
    for t in threads {
        assert_eq!(t.join().expect("request thread"), 504);
    }
    assert_eq!(http.metric("zmws_http_sync_inflight"), 0.0);

    // --- status shows jobs done; stop leaves nothing behind ------------------------
    let st = inst.zmws(&["status"]);
    assert!(st.ok(), "{}", st.text());
    let rev_line = st.stdout.lines().find(|l| l.starts_with("rev.1")).unwrap_or_else(|| panic!("{}", st.stdout));
    assert!(rev_line.contains("up") && rev_line.contains("service STR-REV"), "{rev_line}");
    let done: u64 = rev_line
        .split(", ")
        .find_map(|p| p.strip_suffix(" job(s) done").and_then(|n| n.parse().ok()))
        .unwrap_or_else(|| panic!("{rev_line}"));
    assert!(done >= 203, "{rev_line}");
    let before = inst.processes();
    assert!(before.len() >= 13, "broker + 6 supervisors + 6 workers expected, got {before:?}");
    let out = inst.stop();
    assert!(out.stdout.contains("broker stopped"), "{}", out.text());
    let left = inst.processes();
    assert!(left.is_empty(), "processes left behind: {left:?}\n{}", out.text());
    assert!(inst.pid_files().is_empty(), "{:?}", inst.pid_files());
}

#[test]
fn bearer_token_queue_full_and_stop_during_a_job() {
    let inst = Install::new("auth", |p, _| {
        let mut c = Install::base_config(p, "max_queued = 2", "token = \"s3cret-token\"");
        c.push_str(&Install::worker_entry("hold", "HOLD", 1, 1, &["sleep", "30"]));
        c
    });
    inst.start();
    let anon = inst.http.clone();
    let auth = anon.with_token(Some("s3cret-token"));
    let wrong = anon.with_token(Some("s3cret-tokeN"));

    // /healthz is open; everything else needs the token.
    assert_eq!(anon.get("/healthz").status, 200);
    for path in [
        "/SERVER-WORKERS",
        "/metrics",
        "/HOLD",
        "/SYNC-HOLD",
        "/jobs/0123456789abcdef0123456789abcdef",
        "/nowhere/at/all",
    ] {
        let r = anon.get(path);
        assert_eq!(r.status, 401, "{path}");
        assert!(r.header("www-authenticate").unwrap_or("").starts_with("Bearer"), "{path}");
        assert!(!r.error().is_empty());
        assert_eq!(wrong.get(path).status, 401, "{path}");
    }
    assert_eq!(anon.delete("/jobs/0123456789abcdef0123456789abcdef").status, 401);
    assert_eq!(anon.post("/HOLD", "application/json", b"{}").status, 401);
    assert_eq!(auth.get("/SERVER-WORKERS").status, 200);
    assert_eq!(auth.get("/metrics").status, 200);
    inst.wait_workers(&auth, "HOLD", 1);

    // 503 when the broker's queue is full (one job runs, two wait, then no room).
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = auth.get("/HOLD");
        statuses.push(r.status);
        if r.status == 503 {
            assert!(r.error().contains("queue full"), "{}", r.text());
            break;
        }
        assert_eq!(r.status, 202, "{}", r.text());
    }
    assert_eq!(statuses.last(), Some(&503), "{statuses:?}");
    assert!(statuses.len() >= 3, "{statuses:?}");
    assert_eq!(auth.get("/SYNC-HOLD?timeout_ms=2000").status, 503);
    let q: Value = auth.get("/SERVER-JOBS").json();
    assert_eq!(q.as_array().map(|a| a.len()), Some(2), "{q}");

    // stop: the worker is busy with `sleep 30`; the grace period ends it and
    // nothing (not even the job's child process) is left.
    let t = Instant::now();
    inst.stop();
    assert!(t.elapsed() < Duration::from_secs(20), "stop took {:?}", t.elapsed());
    assert!(inst.processes().is_empty(), "left: {:?}", inst.processes());

    // Everything is down now: status says so (LSB exit code 3).
    let out = gateway::run_bounded(
        std::process::Command::new(gateway::ZMWS).args(["status", "-c"]).arg(&inst.config),
        Duration::from_secs(30),
    );
    assert_eq!(out.code, Some(3), "{}", out.text());
}

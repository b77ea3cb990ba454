//! Clients and workers given several broker endpoints move to the next one
//! when a broker does not answer.

use std::time::Duration;

use zmws::{Broker, BrokerConfig, Client, Worker, WorkerConfig};

#[path = "ports/mod.rs"]
mod ports;

/// An endpoint nobody listens on yet (a broker may be started there later).
fn dead_endpoint() -> String {
    format!("tcp://127.0.0.1:{}", ports::free_port())
}

#[test]
fn client_and_worker_fail_over_to_the_live_broker() {
    let cfg = BrokerConfig::ephemeral().heartbeat(Duration::from_millis(100));
    let broker = Broker::bind(cfg).unwrap().start().unwrap();
    let ep = broker.endpoints().clone();

    let mut wcfg = WorkerConfig::new(&format!("{},{}", dead_endpoint(), ep.worker), "FO");
    wcfg.heartbeat_ms = 100;
    let worker = Worker::with_config(wcfg).unwrap();
    let t = std::thread::spawn(move || {
        let _ = worker.run(|job| Ok(job.payload.to_ascii_uppercase()));
    });

    let mut client = Client::connect(&format!("{},{}", dead_endpoint(), ep.client)).unwrap();
    client.set_request_timeout(Duration::from_millis(300));
    // The worker needs liveness x heartbeat to give up on the dead endpoint.
    let mut registered = false;
    for _ in 0..100 {
        if client.service_available("FO").unwrap() {
            registered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(registered, "worker moved to the live broker");
    assert_eq!(client.endpoint(), ep.client);
    assert_eq!(client.call("FO", b"abc", Duration::from_secs(5)).unwrap(), b"ABC");

    let mut c2 = Client::connect(&format!("{},{}", dead_endpoint(), ep.client)).unwrap();
    c2.set_request_timeout(Duration::from_millis(300));
    assert_eq!(c2.call("FO", b"xyz", Duration::from_secs(5)).unwrap(), b"XYZ", "call fails over too");
    drop(client);
    drop(c2);
    broker.stop().unwrap();
    drop(t);
}

/// A broker that stops gracefully tells its workers (DISCONNECT), so a
/// worker with a second broker in its list moves there at once rather than
/// after heartbeat × liveness of silence (here 1 s × 10 = 10 s: the 5 s
/// bound below only passes because of the DISCONNECT).
#[test]
fn a_broker_stopping_gracefully_sends_its_workers_to_the_next_broker_at_once() {
    let cfg = || BrokerConfig::ephemeral().heartbeat(Duration::from_millis(1000)).liveness(10);
    let first = Broker::bind(cfg()).unwrap().start().unwrap();
    let second = Broker::bind(cfg()).unwrap().start().unwrap();
    let (a, b) = (first.endpoints().clone(), second.endpoints().clone());
    let mut wcfg = WorkerConfig::new(&format!("{},{}", a.worker, b.worker), "MOVE");
    wcfg.heartbeat_ms = 1000;
    wcfg.liveness = 10;
    let worker = std::sync::Arc::new(Worker::with_config(wcfg).unwrap());
    let w = worker.clone();
    let t = std::thread::spawn(move || w.run(|job| Ok(job.payload.clone())));
    let mut on_a = Client::connect(&a.client).unwrap();
    let mut on_b = Client::connect(&b.client).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !on_a.service_available("MOVE").unwrap() {
        assert!(std::time::Instant::now() < deadline, "the worker never registered at the first broker");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(on_a);
    first.stop().unwrap();
    let stopped = std::time::Instant::now();
    while !on_b.service_available("MOVE").unwrap() {
        assert!(stopped.elapsed() < Duration::from_secs(5), "the worker did not move within 5 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(on_b.call("MOVE", b"here", Duration::from_secs(5)).unwrap(), b"here");
    worker.stop();
    t.join().unwrap().unwrap();
    drop(on_b);
    second.stop().unwrap();
}

/// Failback: when the first broker of the list comes back, the worker moves
/// back to it once it has answered for a while (asking its broker to let it
/// go: "zmws:1 moving"), clients follow once it has a worker for their
/// service, every call and submit is answered all along (none is left at a
/// broker the worker has left), a client that was quiet meanwhile moves back
/// before its next call, and jobs accepted by the second broker can still be
/// looked up.
#[test]
fn workers_and_clients_move_back_to_the_first_broker_when_it_returns() {
    let hb = Duration::from_millis(100);
    let (a_client, a_worker) = (dead_endpoint(), dead_endpoint());
    let second = Broker::bind(BrokerConfig { news_endpoint: None, ..BrokerConfig::ephemeral().heartbeat(hb) })
        .unwrap()
        .start()
        .unwrap();
    let b = second.endpoints().clone();

    let mut wcfg = WorkerConfig::new(&format!("{a_worker},{}", b.worker), "BACK");
    wcfg.heartbeat_ms = 100;
    let worker = std::sync::Arc::new(Worker::with_config(wcfg).unwrap());
    let w = worker.clone();
    let t = std::thread::spawn(move || w.run(|job| Ok(job.payload.to_ascii_uppercase())));

    let mut client = Client::connect(&format!("{a_client},{}", b.client)).unwrap();
    client.set_request_timeout(Duration::from_millis(300));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !client.service_available("BACK").unwrap() {
        assert!(std::time::Instant::now() < deadline, "the worker never reached the second broker");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(client.endpoint(), b.client, "the client failed over");
    assert_eq!(client.call("BACK", b"on b", Duration::from_secs(5)).unwrap(), b"ON B");
    let on_b_job = client.submit("BACK", b"kept at b").unwrap();
    let mut quiet = Client::connect(&format!("{a_client},{}", b.client)).unwrap();
    quiet.set_request_timeout(Duration::from_millis(300));
    assert_eq!(quiet.call("BACK", b"on b", Duration::from_secs(5)).unwrap(), b"ON B");

    // The first broker comes back on its endpoints.
    let first = Broker::bind(BrokerConfig {
        client_endpoint: a_client.clone(),
        worker_endpoint: a_worker.clone(),
        news_endpoint: None,
        ..BrokerConfig::ephemeral().heartbeat(hb)
    })
    .unwrap()
    .start()
    .unwrap();
    let mut on_a = Client::connect(&a_client).unwrap();
    on_a.set_request_timeout(Duration::from_secs(2));
    let back = std::time::Instant::now();
    let mut worker_back = false;
    let mut calls = 0;
    loop {
        assert!(
            back.elapsed() < Duration::from_secs(20),
            "client on {}, worker back: {worker_back}",
            client.endpoint()
        );
        // Every call is answered, wherever the worker is at that moment.
        assert_eq!(client.call("BACK", b"x", Duration::from_secs(5)).unwrap(), b"X");
        assert!(client.submit("BACK", b"async").is_ok());
        let both = client.batch("BACK", &[b"p", b"q"], Duration::from_secs(5)).unwrap();
        assert_eq!(both.into_iter().map(|r| r.unwrap()).collect::<Vec<_>>(), vec![b"P".to_vec(), b"Q".to_vec()]);
        calls += 1;
        worker_back |= on_a.service_available("BACK").unwrap();
        let client_back = client.endpoint() == a_client;
        assert!(!client_back || worker_back, "the client moved back before the first broker had a worker for it");
        if client_back {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(calls > 10, "the worker moved back only after a settling time ({calls} calls)");
    assert_eq!(
        String::from_utf8(client.result(&on_b_job.to_string()).unwrap()).unwrap(),
        "KEPT AT B",
        "looked up at the broker that has it"
    );
    assert_eq!(client.status(&on_b_job.to_string()).unwrap().state, zmws::JobState::Complete);
    assert_eq!(client.endpoint(), a_client, "and the client stays on its broker");
    assert_eq!(on_a.call("BACK", b"on a", Duration::from_secs(5)).unwrap(), b"ON A");

    // The client that failed over but was quiet all along moves back before
    // its next call (it waits briefly for a fresh probe's answer).
    assert_eq!(quiet.endpoint(), b.client);
    assert_eq!(quiet.call("BACK", b"late", Duration::from_secs(5)).unwrap(), b"LATE");
    assert_eq!(quiet.endpoint(), a_client);

    // The second broker has no worker left, and says why to a stock request.
    let mut on_b = Client::connect(&b.client).unwrap();
    assert!(!on_b.service_available("BACK").unwrap(), "the worker left the second broker");
    match on_b.submit("BACK", b"stray") {
        Err(zmws::Error::NoSuchService(m)) => assert!(m.contains("moved to another broker"), "{m}"),
        other => panic!("expected a 'moved' refusal from the second broker, got {other:?}"),
    }
    let queued = on_b.jobs(zmws::JobList::Queued).unwrap();
    assert!(queued.is_empty(), "no job was left behind at the second broker: {queued:?}");

    worker.stop();
    t.join().unwrap().unwrap();
    drop((client, quiet, on_a, on_b));
    first.stop().unwrap();
    second.stop().unwrap();
}

/// A service no broker of the list knows is refused with the first
/// broker's 404, quickly, even when a later broker of the list is down.
#[test]
fn an_unknown_service_is_refused_quickly_when_a_later_broker_is_down() {
    let broker =
        Broker::bind(BrokerConfig { news_endpoint: None, ..BrokerConfig::ephemeral() }).unwrap().start().unwrap();
    let ep = broker.endpoints().clone();
    let mut client = Client::connect(&format!("{},{}", ep.client, dead_endpoint())).unwrap();
    let started = std::time::Instant::now();
    match client.submit("NOBODY", b"x") {
        Err(zmws::Error::NoSuchService(m)) => assert!(m.contains("no worker has ever offered"), "{m}"),
        other => panic!("expected 404, got {other:?}"),
    }
    match client.call("NOBODY", b"x", Duration::from_secs(5)) {
        Err(zmws::Error::NoSuchService(_)) => {}
        other => panic!("expected 404, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
    assert_eq!(client.endpoint(), ep.client, "the client stays on its broker");
    drop(client);
    broker.stop().unwrap();
}

/// A job refused by the client's broker is offered only to a broker with
/// live workers for its service: one that merely knows the service (its
/// workers left) would queue it for nobody.
#[test]
fn a_refused_job_is_not_offered_to_a_broker_without_live_workers() {
    let cfg =
        || BrokerConfig { news_endpoint: None, ..BrokerConfig::ephemeral().heartbeat(Duration::from_millis(100)) };
    let first = Broker::bind(cfg()).unwrap().start().unwrap();
    let second = Broker::bind(cfg()).unwrap().start().unwrap();
    let (a, b) = (first.endpoints().clone(), second.endpoints().clone());
    // The second broker learns the service, then its only worker leaves.
    let worker = Worker::connect(&b.worker, "GONE").unwrap();
    let mut on_b = Client::connect(&b.client).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !on_b.service_available("GONE").unwrap() {
        assert!(std::time::Instant::now() < deadline, "the worker never registered");
        std::thread::sleep(Duration::from_millis(20));
    }
    worker.close();
    while on_b.service_available("GONE").unwrap() {
        assert!(std::time::Instant::now() < deadline, "the worker never left");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut client = Client::connect(&format!("{},{}", a.client, b.client)).unwrap();
    match client.submit("GONE", b"x") {
        Err(zmws::Error::NoSuchService(m)) => assert!(m.contains("no worker has ever offered"), "{m}"),
        other => panic!("expected the first broker's 404, got {other:?}"),
    }
    assert_eq!(client.endpoint(), a.client);
    assert!(on_b.jobs(zmws::JobList::Queued).unwrap().is_empty(), "nothing was queued at the second broker");
    drop((client, on_b));
    first.stop().unwrap();
    second.stop().unwrap();
}

/// A new client whose first broker is down starts on a later one that
/// connects, instead of waiting out a request timeout first (the CLI makes
/// a new client per command).
#[test]
fn a_new_client_starts_on_a_live_broker_when_the_first_is_down() {
    let broker =
        Broker::bind(BrokerConfig { news_endpoint: None, ..BrokerConfig::ephemeral() }).unwrap().start().unwrap();
    let ep = broker.endpoints().clone();
    let started = std::time::Instant::now();
    let mut client = Client::connect(&format!("{},{}", dead_endpoint(), ep.client)).unwrap();
    assert_eq!(client.endpoint(), ep.client);
    assert!(!client.service_available("ANY").unwrap());
    assert!(started.elapsed() < Duration::from_millis(4000), "took {:?} (request timeout: 5 s)", started.elapsed());
    // With the first broker up, it starts there.
    let mut first = Client::connect(&format!("{},{}", ep.client, dead_endpoint())).unwrap();
    assert_eq!(first.endpoint(), ep.client);
    assert!(!first.service_available("ANY").unwrap());
    drop((client, first));
    broker.stop().unwrap();
}

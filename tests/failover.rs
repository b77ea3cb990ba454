//! Clients and workers given several broker endpoints move to the next one
//! when a broker does not answer.

use std::net::TcpListener;
use std::time::Duration;

use zmws::{Broker, BrokerConfig, Client, Worker, WorkerConfig};

fn dead_endpoint() -> String {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("tcp://127.0.0.1:{port}")
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

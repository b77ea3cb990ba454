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

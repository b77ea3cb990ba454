//! Job state changes are published on the news socket, topic = service.

use std::time::{Duration, Instant};

use zmws::{Broker, BrokerConfig, Client, Worker};

#[test]
fn events_follow_a_job_through_its_states() {
    let broker = Broker::bind(BrokerConfig::ephemeral()).unwrap().start().unwrap();
    let ep = broker.endpoints().clone();
    let ctx = zmq::Context::new();
    let sub = ctx.socket(zmq::SUB).unwrap();
    sub.connect(ep.news.as_deref().unwrap()).unwrap();
    sub.set_subscribe(b"EVT").unwrap();
    let worker = Worker::connect(&ep.worker, "EVT").unwrap();
    let mut client = Client::connect(&ep.client).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !client.service_available("EVT").unwrap() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    // The subscription travels asynchronously: submit until events show up.
    let mut seen = Vec::new();
    let mut job_id = String::new();
    while Instant::now() < deadline
        && !seen.iter().any(|e: &serde_json::Value| e["event"] == "completed" && e["job_id"] == job_id.as_str())
    {
        if seen.is_empty() {
            job_id = client.submit("EVT", b"x").unwrap().to_string();
            if let Some(job) = worker.next_job(Duration::from_secs(5)).unwrap() {
                worker.complete(&job.id, b"y").unwrap();
            }
        }
        if sub.poll(zmq::POLLIN, 200).unwrap() > 0 {
            let frames = sub.recv_multipart(0).unwrap();
            assert_eq!(frames[0], b"EVT");
            seen.push(serde_json::from_slice(&frames[1]).unwrap());
        } else {
            seen.clear();
        }
    }
    let kinds: Vec<&str> =
        seen.iter().filter(|e| e["job_id"] == job_id.as_str()).map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["queued", "started", "completed"], "events: {seen:?}");
    drop(worker);
    broker.stop().unwrap();
}

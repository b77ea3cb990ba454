//! `GET /metrics`: the broker's `zmws.services` counters and the gateway's
//! own request counters in the Prometheus text exposition format (0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde_json::Value;

use crate::engine::LATENCY_BUCKETS_MS;

/// Content type of the exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Counters the gateway keeps about its own HTTP traffic.
#[derive(Default)]
pub struct HttpStats {
    by_status: Mutex<BTreeMap<u16, u64>>,
    /// Requests answered.
    pub total: AtomicU64,
}

impl HttpStats {
    /// Counts one answered request.
    pub fn record(&self, status: u16) {
        self.total.fetch_add(1, Ordering::Relaxed);
        *self.by_status.lock().entry(status).or_insert(0) += 1;
    }

    fn snapshot(&self) -> Vec<(u16, u64)> {
        self.by_status.lock().iter().map(|(k, v)| (*k, *v)).collect()
    }
}

/// Escapes a label value (`\`, `"` and newline).
pub fn escape_label(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn u(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(x) => cur = x,
            None => return 0,
        }
    }
    cur.as_u64().unwrap_or(0)
}

/// Seconds from milliseconds, printed without needless digits.
fn secs(ms: u64) -> String {
    let s = format!("{:.3}", ms as f64 / 1000.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() {
        "0".into()
    } else {
        s.to_string()
    }
}

/// Renders the exposition. `services` is the broker's `zmws.services` JSON
/// array, or `None` when the broker did not answer (then `zmws_up 0`).
pub fn render(services: Option<&Value>, http: &HttpStats, inflight_calls: usize, calls_total: u64) -> String {
    let mut out = String::with_capacity(4096);
    header(&mut out, "zmws_up", "gauge", "1 when the broker answered the gateway's metrics query.");
    let _ = writeln!(out, "zmws_up {}", u8::from(services.is_some()));

    let empty = Vec::new();
    let list = services.and_then(Value::as_array).unwrap_or(&empty);
    let rows: Vec<(String, &Value)> =
        list.iter().map(|s| (escape_label(s.get("service").and_then(Value::as_str).unwrap_or("")), s)).collect();

    let counters: [(&str, &str, &str); 5] = [
        ("zmws_jobs_submitted_total", "submitted", "Jobs accepted by the broker."),
        ("zmws_jobs_completed_total", "completed", "Jobs completed with a result."),
        ("zmws_jobs_failed_total", "failed", "Jobs that failed (worker FAIL, attempts exhausted)."),
        (
            "zmws_jobs_retried_total",
            "retried",
            "Attempts given to another worker (timeout, worker death, retryable FAIL).",
        ),
        ("zmws_jobs_cancelled_total", "cancelled", "Jobs cancelled by a client."),
    ];
    for (name, key, help) in counters {
        header(&mut out, name, "counter", help);
        for (svc, s) in &rows {
            let _ = writeln!(out, "{name}{{service=\"{svc}\"}} {}", u(s, &["stats", key]));
        }
    }
    let gauges: [(&str, &str, &str); 4] = [
        ("zmws_queue_depth", "queued", "Jobs waiting for a worker."),
        ("zmws_jobs_active", "active", "Jobs being worked on."),
        ("zmws_workers", "workers", "Live workers offering the service."),
        ("zmws_workers_busy", "workers_busy", "Live workers holding at least one job."),
    ];
    for (name, key, help) in gauges {
        header(&mut out, name, "gauge", help);
        for (svc, s) in &rows {
            let _ = writeln!(out, "{name}{{service=\"{svc}\"}} {}", u(s, &[key]));
        }
    }

    let name = "zmws_job_latency_seconds";
    header(&mut out, name, "histogram", "Time from acceptance to completion of completed jobs.");
    for (svc, s) in &rows {
        let buckets: Vec<u64> = s
            .get("stats")
            .and_then(|st| st.get("latency_buckets"))
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|v| v.as_u64().unwrap_or(0)).collect())
            .unwrap_or_default();
        let mut cumulative = 0u64;
        for (i, bound) in LATENCY_BUCKETS_MS.iter().enumerate() {
            cumulative += buckets.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{service=\"{svc}\",le=\"{}\"}} {cumulative}", secs(*bound));
        }
        let total: u64 = buckets.iter().sum();
        let _ = writeln!(out, "{name}_bucket{{service=\"{svc}\",le=\"+Inf\"}} {total}");
        let _ = writeln!(out, "{name}_sum{{service=\"{svc}\"}} {}", secs(u(s, &["stats", "latency_ms_sum"])));
        let _ = writeln!(out, "{name}_count{{service=\"{svc}\"}} {total}");
    }

    header(&mut out, "zmws_http_requests_total", "counter", "HTTP requests answered by the gateway, by status code.");
    for (code, n) in http.snapshot() {
        let _ = writeln!(out, "zmws_http_requests_total{{code=\"{code}\"}} {n}");
    }
    header(&mut out, "zmws_http_sync_inflight", "gauge", "SYNC requests waiting for a result.");
    let _ = writeln!(out, "zmws_http_sync_inflight {inflight_calls}");
    header(&mut out, "zmws_http_sync_calls_total", "counter", "SYNC requests made.");
    let _ = writeln!(out, "zmws_http_sync_calls_total {calls_total}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_services_and_cumulative_buckets() {
        let mut buckets = vec![0u64; LATENCY_BUCKETS_MS.len() + 1];
        buckets[0] = 2;
        buckets[3] = 1;
        buckets[LATENCY_BUCKETS_MS.len()] = 1;
        let v = serde_json::json!([{
            "service": "STR-\"REV\"", "queued": 3, "active": 1, "workers": 2, "workers_busy": 1,
            "stats": {"submitted": 8, "completed": 4, "failed": 1, "retried": 2, "cancelled": 0,
                      "latency_ms_sum": 61234, "latency_buckets": buckets}
        }]);
        let stats = HttpStats::default();
        stats.record(200);
        stats.record(200);
        stats.record(404);
        let text = render(Some(&v), &stats, 5, 9);
        assert!(text.contains("zmws_up 1\n"));
        assert!(text.contains("zmws_jobs_submitted_total{service=\"STR-\\\"REV\\\"\"} 8\n"), "{text}");
        assert!(text.contains("zmws_queue_depth{service=\"STR-\\\"REV\\\"\"} 3\n"));
        assert!(
            text.contains("zmws_job_latency_seconds_bucket{service=\"STR-\\\"REV\\\"\",le=\"0.001\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("le=\"0.05\"} 3\n"), "{text}");
        assert!(text.contains("le=\"60\"} 3\n"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 4\n"), "{text}");
        assert!(text.contains("zmws_job_latency_seconds_sum{service=\"STR-\\\"REV\\\"\"} 61.234\n"), "{text}");
        assert!(text.contains("zmws_http_requests_total{code=\"200\"} 2\n"));
        assert!(text.contains("zmws_http_sync_inflight 5\n"));
        let down = render(None, &stats, 0, 0);
        assert!(down.contains("zmws_up 0\n"));
    }
}

//! `zmws-bench report RAW`: medians over reps of a raw results file (one
//! `rep=K peer=P scenario=S key=value…` line per measurement, as written by
//! bench/compare.sh), then a side-by-side Markdown table with ratios and the
//! targets of issue 8.
//!
//! Medians are taken per (peer, scenario) and per key independently, the way
//! the peers' run.sh does (middle value; mean of the two middle ones for an
//! even count); `reps=` says how many lines a median is over.

use std::collections::HashMap;

type Res<T> = std::result::Result<T, String>;

/// Peers that are job servers (the "best peer" of a ratio is taken among these).
const JOB_SERVERS: &[&str] = &["gearmand", "beanstalkd"];
/// Variant suffixes of zmws scenarios; stripped to find the peers' scenario.
const SUFFIXES: &[&str] = &["_persist", "_ipc", "_news", "_rawworker", "_batchfill"];

#[derive(Default)]
struct Entry {
    keys: Vec<String>,
    samples: HashMap<String, Vec<f64>>,
    count: usize,
}

struct Medians {
    order: Vec<(String, String)>,
    entries: HashMap<(String, String), Entry>,
}

impl Medians {
    fn get(&self, peer: &str, scenario: &str, key: &str) -> Option<f64> {
        let e = self.entries.get(&(peer.to_string(), scenario.to_string()))?;
        median(e.samples.get(key)?)
    }
}

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let m = s.len();
    Some(if m % 2 == 1 { s[m / 2] } else { (s[m / 2 - 1] + s[m / 2]) / 2.0 })
}

fn parse(text: &str) -> Medians {
    let mut m = Medians { order: Vec::new(), entries: HashMap::new() };
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (mut peer, mut scen) = (None, None);
        let mut kv = Vec::new();
        for tok in line.split_whitespace() {
            let Some((k, v)) = tok.split_once('=') else {
                continue;
            };
            match k {
                "peer" => peer = Some(v.to_string()),
                "scenario" => scen = Some(v.to_string()),
                "rep" | "reps" => {}
                _ => kv.push((k.to_string(), v.to_string())),
            }
        }
        let (Some(peer), Some(scen)) = (peer, scen) else {
            continue;
        };
        let id = (peer, scen);
        if !m.entries.contains_key(&id) {
            m.order.push(id.clone());
        }
        let e = m.entries.entry(id).or_default();
        e.count += 1;
        for (k, v) in kv {
            if !e.keys.contains(&k) {
                e.keys.push(k.clone());
            }
            if let Ok(x) = v.parse::<f64>() {
                e.samples.entry(k).or_default().push(x);
            }
        }
    }
    m
}

fn fmt_val(key: &str, v: f64) -> String {
    if key.contains("_us") {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// 1234567 → "1,234,567"; latencies keep one decimal.
fn pretty(key: &str, v: f64) -> String {
    if key.contains("_us") {
        return format!("{v:.1}");
    }
    let s = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 {
        out.insert(0, '-');
    }
    out
}

/// The peers' scenario a zmws scenario compares with (`drain_w4_cap16` → `drain_w4`).
fn base_scenario(s: &str) -> String {
    let mut b = s.to_string();
    for suf in SUFFIXES {
        b = b.replace(suf, "");
    }
    // `_spinN`: the broker's --spin-us
    if let Some(i) = b.find("_spin") {
        let rest = &b[i + 5..];
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits > 0 {
            b = format!("{}{}", &b[..i], &rest[digits..]);
        }
    }
    if let Some(i) = b.find("_cap") {
        let rest = &b[i + 4..];
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits > 0 {
            b = format!("{}{}", &b[..i], &rest[digits..]);
        }
    }
    b
}

/// Server CPU time per job: robust against other load on the machine.
const CPU: (&str, &str, bool) = ("server_cpu_us_per_job", "server CPU µs per job (lower better)", false);

/// Metrics shown per scenario kind: (key, label, higher is better).
fn metrics(base: &str) -> &'static [(&'static str, &'static str, bool)] {
    if base.starts_with("sync_") {
        &[
            ("p50_us", "p50 µs (lower better)", false),
            ("p99_us", "p99 µs (lower better)", false),
            ("jobs_per_s", "jobs/s", true),
            CPU,
        ]
    } else if base.starts_with("tput_") || base.starts_with("pipe_") {
        &[("jobs_per_s", "jobs/s end to end", true), ("submit_jobs_per_s", "submit jobs/s", true), CPU]
    } else if base.starts_with("rss_") {
        &[("bytes_per_job", "bytes per queued job (lower better)", false)]
    } else {
        &[("jobs_per_s", "jobs/s", true), CPU]
    }
}

/// The raw-libzmq reference for a scenario and key, if there is one.
fn floor(m: &Medians, base: &str, key: &str) -> Option<(f64, String)> {
    if base.starts_with("sync_") {
        let k = if key == "jobs_per_s" { "msgs_per_s" } else { key };
        return m.get("zmq_limit", base, k).map(|v| (v, format!("zmq_limit {base}")));
    }
    if base.starts_with("pipe_") && key == "jobs_per_s" {
        return m.get("zmq_limit", "pipe_echo_w4", "msgs_per_s").map(|v| (v, "zmq_limit pipe_echo_w4".to_string()));
    }
    None
}

fn best_peer(m: &Medians, peers: &[String], base: &str, key: &str, higher: bool) -> Option<(f64, String)> {
    let mut best: Option<(f64, String)> = None;
    for p in peers.iter().filter(|p| JOB_SERVERS.contains(&p.as_str())) {
        if let Some(v) = m.get(p, base, key) {
            let better = match &best {
                None => true,
                Some((b, _)) => (higher && v > *b) || (!higher && v < *b),
            };
            if better {
                best = Some((v, p.clone()));
            }
        }
    }
    best
}

pub fn report(path: &str) -> Res<()> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let m = parse(&text);

    // 1. Median lines, in order of first appearance (the run.sh format).
    println!("## medians");
    for id in &m.order {
        let e = &m.entries[id];
        let mut line = format!("peer={} scenario={}", id.0, id.1);
        for k in &e.keys {
            if let Some(v) = e.samples.get(k).and_then(|s| median(s)) {
                line += &format!(" {k}={}", fmt_val(k, v));
            }
        }
        println!("{line} reps={}", e.count);
    }

    // 2. Side-by-side table, one row per zmws scenario and metric.
    let mut peers: Vec<String> = Vec::new();
    for (p, _) in &m.order {
        if JOB_SERVERS.contains(&p.as_str()) && !peers.contains(p) {
            peers.push(p.clone());
        }
    }
    println!();
    println!("## table");
    println!();
    let mut head = "| scenario | metric |".to_string();
    let mut rule = "|---|---|".to_string();
    for p in &peers {
        head += &format!(" {p} |");
        rule += "---:|";
    }
    head += " libzmq floor | zmws | zmws ÷ best peer | zmws ÷ floor |";
    rule += "---:|---:|---:|---:|";
    println!("{head}\n{rule}");
    for (peer, scen) in &m.order {
        if peer != "zmws" {
            continue;
        }
        let base = base_scenario(scen);
        for &(key, label, higher) in metrics(&base) {
            let Some(z) = m.get("zmws", scen, key) else {
                continue;
            };
            let mut row =
                format!("| {scen}{} | {label} |", if base != *scen { format!(" (vs {base})") } else { String::new() });
            for p in &peers {
                row += &format!(" {} |", m.get(p, &base, key).map(|v| pretty(key, v)).unwrap_or_else(|| "—".into()));
            }
            let fl = floor(&m, &base, key);
            row += &format!(" {} |", fl.as_ref().map(|(v, _)| pretty(key, *v)).unwrap_or_else(|| "—".into()));
            row += &format!(" **{}** |", pretty(key, z));
            row += &match best_peer(&m, &peers, &base, key, higher) {
                Some((b, who)) if b > 0.0 => format!(" {:.2}× ({who}) |", z / b),
                _ => " — |".into(),
            };
            row += &match fl {
                Some((f, _)) if f > 0.0 => format!(" {:.2}× |", z / f),
                _ => " — |".into(),
            };
            println!("{row}");
        }
    }

    // 3. zmws only: CPU per job by process, and the rate those would allow
    //    if the machine's CPUs did nothing else.
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    let mut rows = Vec::new();
    for (peer, scen) in &m.order {
        if peer != "zmws" {
            continue;
        }
        let (Some(b), Some(w)) =
            (m.get(peer, scen, "server_cpu_us_per_job"), m.get(peer, scen, "worker_cpu_us_per_job"))
        else {
            continue;
        };
        let c = m.get(peer, scen, "client_cpu_us_per_job");
        let total = b + w + c.unwrap_or(0.0);
        let rate = m.get(peer, scen, "jobs_per_s").map(|r| pretty("jobs_per_s", r)).unwrap_or_else(|| "—".into());
        rows.push(format!(
            "| {scen} | {b:.1} | {} | {w:.1} | {total:.1} | {} | {rate} |",
            c.map(|c| format!("{c:.1}")).unwrap_or_else(|| "—".into()),
            pretty("jobs_per_s", cpus * 1e6 / total)
        ));
    }
    if !rows.is_empty() {
        println!();
        println!("## zmws: CPU per job by process (µs)");
        println!();
        println!("| scenario | broker | client | workers (all) | total | CPU-bound ceiling on {cpus} CPUs, jobs/s | measured jobs/s |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for r in rows {
            println!("{r}");
        }
    }

    // 4. The targets of issue 8.
    println!();
    println!("## targets (issue 8)");
    println!();
    let z = |s: &str, k: &str| m.get("zmws", s, k);
    let target = |what: &str, have: Option<f64>, want: &str, ok: Option<bool>| {
        let verdict = match ok {
            Some(true) => "MET",
            Some(false) => "MISSED",
            None => "n/a (not measured)",
        };
        let have = have.map(|v| format!("{v:.2}")).unwrap_or_else(|| "—".into());
        println!("- {what}: {have} (target {want}) → {verdict}");
    };
    let floor_p50 = m.get("zmq_limit", "sync_w1", "p50_us");
    let r = z("sync_w1", "p50_us").zip(floor_p50).map(|(a, b)| a / b);
    target("sync_w1 p50 ÷ libzmq proxy floor p50", r, "≤ 1.10", r.map(|r| r <= 1.10));
    let bp = best_peer(&m, &peers, "sync_w1", "p50_us", false).map(|x| x.0);
    let r = z("sync_w1", "p50_us").zip(bp).map(|(a, b)| a / b);
    target("sync_w1 p50 ÷ best peer p50 (the aim)", r, "≤ 1.00", r.map(|r| r <= 1.0));
    for (zs, ps) in [("pipe_w4", "pipe_w4"), ("drain_w4", "drain_w4")] {
        let bp = best_peer(&m, &peers, ps, "jobs_per_s", true).map(|x| x.0);
        // every capacity > 1 variant measured, plus capacity 1 for reference
        let mut any = false;
        for (p, s) in &m.order {
            if p == "zmws" && s.starts_with(&format!("{zs}_cap")) && base_scenario(s) == ps && !s.contains("_persist") {
                any = true;
                let r = z(s, "jobs_per_s").zip(bp).map(|(a, b)| a / b);
                target(&format!("{s} jobs/s ÷ best peer {ps}"), r, "≥ 10", r.map(|r| r >= 10.0));
            }
        }
        if !any {
            target(&format!("{zs}_capN jobs/s ÷ best peer {ps}"), None, "≥ 10", None);
        }
        let r = z(zs, "jobs_per_s").zip(bp).map(|(a, b)| a / b);
        let want = if zs == "drain_w4" {
            "> 1 (capacity 1: ahead of both peers)"
        } else {
            "≥ 10 (capacity 1, for reference)"
        };
        target(
            &format!("{zs} (capacity 1) jobs/s ÷ best peer"),
            r,
            want,
            r.map(|r| if zs == "drain_w4" { r > 1.0 } else { r >= 10.0 }),
        );
    }
    let bp = best_peer(&m, &peers, "tput_w4", "jobs_per_s", true).map(|x| x.0);
    let r = z("tput_w4", "jobs_per_s").zip(bp).map(|(a, b)| a / b);
    target("tput_w4 end-to-end jobs/s ÷ best peer", r, "> 1 (ahead of both peers)", r.map(|r| r > 1.0));
    // The same capacity-1 targets with the broker's --spin-us (off by default).
    let spun: Vec<String> = m
        .order
        .iter()
        .filter(|(p, s)| p == "zmws" && s.contains("_spin") && !s.contains("_cap"))
        .map(|x| x.1.clone())
        .collect();
    for s in &spun {
        match base_scenario(s).as_str() {
            "sync_w1" => {
                let bp = best_peer(&m, &peers, "sync_w1", "p50_us", false).map(|x| x.0);
                let r = z(s, "p50_us").zip(bp).map(|(a, b)| a / b);
                target(
                    &format!("{s} p50 ÷ best peer sync_w1 p50 (the aim, broker spinning)"),
                    r,
                    "≤ 1.00",
                    r.map(|r| r <= 1.0),
                );
            }
            base @ ("tput_w4" | "drain_w4") => {
                let bp = best_peer(&m, &peers, base, "jobs_per_s", true).map(|x| x.0);
                let r = z(s, "jobs_per_s").zip(bp).map(|(a, b)| a / b);
                target(
                    &format!("{s} jobs/s ÷ best peer {base} (broker spinning)"),
                    r,
                    "> 1 (ahead of both peers)",
                    r.map(|r| r > 1.0),
                );
            }
            _ => {}
        }
    }
    let rss_scen = m
        .order
        .iter()
        .find(|(p, s)| p == "zmws" && s.starts_with("rss_") && base_scenario(s) == *s)
        .map(|x| x.1.clone());
    let bpj = rss_scen.as_deref().and_then(|s| z(s, "bytes_per_job"));
    target("broker RSS bytes per queued 100-byte job", bpj, "≤ 250", bpj.map(|b| b <= 250.0));
    let hwm = z("rss_1000000_queued_batchfill", "vmhwm_kb");
    target(
        "broker peak memory (VmHWM) with 1,000,000 queued jobs, MB",
        hwm.map(|kb| kb / 1024.0),
        "< 300",
        hwm.map(|kb| kb / 1024.0 < 300.0),
    );
    // pipe_w4 submits async jobs (zmws.submit.batch), which the durable store
    // journals: each persisted run is compared with the same scenario in memory.
    let persisted: Vec<String> = m
        .order
        .iter()
        .filter(|(p, s)| p == "zmws" && s.starts_with("pipe_w4") && s.ends_with("_persist"))
        .map(|x| x.1.clone())
        .collect();
    for s in &persisted {
        let base = s.trim_end_matches("_persist").to_string();
        let r = z(s, "jobs_per_s").zip(z(&base, "jobs_per_s")).map(|(a, b)| a / b);
        target(&format!("{s} ÷ in-memory {base} (jobs/s)"), r, "≥ 0.50", r.map(|r| r >= 0.5));
    }
    if persisted.is_empty() {
        let r = z("tput_w4_persist", "jobs_per_s").zip(z("tput_w4", "jobs_per_s")).map(|(a, b)| a / b);
        target("tput_w4 with the durable store ÷ in-memory tput_w4", r, "≥ 0.50", r.map(|r| r >= 0.5));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_scenarios() {
        assert_eq!(base_scenario("drain_w4_cap16"), "drain_w4");
        assert_eq!(base_scenario("pipe_w4_cap16_persist"), "pipe_w4");
        assert_eq!(base_scenario("sync_w1_ipc"), "sync_w1");
        assert_eq!(base_scenario("rss_100000_queued"), "rss_100000_queued");
        assert_eq!(base_scenario("sync_w1_spin300"), "sync_w1");
        assert_eq!(base_scenario("drain_w4_spin300"), "drain_w4");
    }

    #[test]
    fn medians_like_run_sh() {
        let m = parse("rep=1 peer=a scenario=s x=1 y_us=2\nrep=2 peer=a scenario=s x=3 y_us=4\nrep=3 peer=a scenario=s x=2\n# c\n");
        assert_eq!(m.get("a", "s", "x"), Some(2.0));
        assert_eq!(m.get("a", "s", "y_us"), Some(3.0));
        assert_eq!(m.entries[&("a".to_string(), "s".to_string())].count, 3);
        assert_eq!(pretty("jobs_per_s", 1234567.4), "1,234,567");
        assert_eq!(pretty("p50_us", 12.34), "12.3");
    }
}

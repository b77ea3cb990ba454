//! Loopback ports for servers a test starts later (shared by the test crates).

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// Lowest port handed out; below it sit well-known services.
const FIRST_PORT: u32 = 20_000;

/// A loopback TCP port nobody listens on, for a server the test starts later.
///
/// A port from `bind(":0")` comes from the kernel's ephemeral range, and once
/// released it may be taken by any outgoing connection of a test running
/// beside this one (CI saw `Address already in use` that way). These ports
/// come from below that range, where neither a port-0 bind nor a connect
/// picks: unique within this process, spread over processes by pid, and
/// checked to be bindable now.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse::<u32>().ok()))
        .unwrap_or(32_768);
    if ephemeral_low < FIRST_PORT + 1_000 {
        // No room below the ephemeral range on this machine: take the kernel's pick.
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        return l.local_addr().expect("local addr").port();
    }
    let span = ephemeral_low - FIRST_PORT;
    let base = std::process::id().wrapping_mul(7_919);
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST_PORT + base.wrapping_add(n) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {FIRST_PORT} and {ephemeral_low}");
}

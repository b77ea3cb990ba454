//! `zmws-bench wakeup`: what one thread hand-off costs on this machine.
//!
//! Every message through a libzmq socket is handed between the
//! application thread and libzmq's I/O thread, on both ends; a blocking
//! TCP peer (gearmand's and beanstalkd's drivers, beanstalkd itself) has no
//! such hand-off. How much that costs depends on the machine: on a VM an
//! idle vCPU must be woken by the hypervisor, which can cost ten times a
//! wake-up on the CPU already running. This measures it:
//!
//! - `wakeup_threads_*`: two threads of one process answer each other over
//!   eventfds (what libzmq's mailboxes are), N round trips, free (the
//!   scheduler places them), both on one CPU, and on two different CPUs;
//! - `wakeup_tcp_*`: two processes answer each other with 1-byte writes
//!   over loopback TCP with blocking sockets (a peer's hop), free and on
//!   one CPU.
//!
//! One line each, `peer=machine scenario=… round_trip_us=… one_way_us=…`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

/// Pins the calling thread to one CPU; false when the machine refuses.
fn pin_to(cpu: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the call reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

fn eventfd() -> i32 {
    // SAFETY: plain system call; the descriptor is ours.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    assert!(fd >= 0, "eventfd: {}", std::io::Error::last_os_error());
    fd
}

/// Blocks until `fd` is readable, then consumes its count.
fn wait_on(fd: i32) {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    let mut v = 0u64;
    // SAFETY: p and v outlive the calls; fd is an open eventfd.
    unsafe {
        while libc::poll(&mut p, 1, -1) < 0 {}
        libc::read(fd, &mut v as *mut u64 as *mut libc::c_void, 8);
    }
}

fn signal(fd: i32) {
    let v = 1u64;
    // SAFETY: v outlives the call; fd is an open eventfd.
    unsafe { libc::write(fd, &v as *const u64 as *const libc::c_void, 8) };
}

/// Placement of the two sides.
#[derive(Clone, Copy)]
enum Place {
    Free,
    SameCpu,
    TwoCpus,
}

fn place(p: Place, side: usize) {
    match p {
        Place::Free => {}
        Place::SameCpu => {
            pin_to(0);
        }
        Place::TwoCpus => {
            pin_to(side);
        }
    }
}

/// Microseconds per round trip between two threads over eventfds.
fn threads(n: u32, p: Place) -> f64 {
    let (ping, pong) = (eventfd(), eventfd());
    let answerer = std::thread::spawn(move || {
        place(p, 1);
        for _ in 0..n {
            wait_on(ping);
            signal(pong);
        }
    });
    let t = std::thread::spawn(move || {
        place(p, 0);
        let start = Instant::now();
        for _ in 0..n {
            signal(ping);
            wait_on(pong);
        }
        start.elapsed()
    })
    .join()
    .expect("ping thread");
    answerer.join().expect("pong thread");
    // SAFETY: both descriptors are ours and no longer used.
    unsafe {
        libc::close(ping);
        libc::close(pong);
    }
    t.as_secs_f64() * 1e6 / n as f64
}

/// Microseconds per round trip between two processes over loopback TCP.
fn tcp(n: u32, p: Place) -> Result<f64, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // SAFETY: the child only runs the echo loop below and _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        place(p, 1);
        let code = (|| -> std::io::Result<()> {
            let (mut s, _) = listener.accept()?;
            s.set_nodelay(true)?;
            let mut b = [0u8; 1];
            for _ in 0..n {
                s.read_exact(&mut b)?;
                s.write_all(&b)?;
            }
            Ok(())
        })()
        .map_or(1, |_| 0);
        // SAFETY: leave the forked child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    drop(listener);
    let result = std::thread::spawn(move || -> std::io::Result<f64> {
        place(p, 0);
        let mut s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        let mut b = [7u8; 1];
        let start = Instant::now();
        for _ in 0..n {
            s.write_all(&b)?;
            s.read_exact(&mut b)?;
        }
        Ok(start.elapsed().as_secs_f64() * 1e6 / n as f64)
    })
    .join()
    .map_err(|_| "ping thread panicked".to_string())?;
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    result.map_err(|e| format!("tcp ping: {e}"))
}

/// Runs every placement and prints one line each.
pub fn run(n: u32) -> Result<(), String> {
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1);
    let mut cases: Vec<(&str, Place)> = vec![("free", Place::Free), ("same_cpu", Place::SameCpu)];
    if cpus >= 2 {
        cases.push(("two_cpus", Place::TwoCpus));
    }
    for (name, p) in &cases {
        let rt = threads(n, *p);
        println!("peer=machine scenario=wakeup_threads_{name} round_trip_us={rt:.2} one_way_us={:.2} n={n}", rt / 2.0);
    }
    for (name, p) in &cases {
        let rt = tcp(n, *p)?;
        println!("peer=machine scenario=wakeup_tcp_{name} round_trip_us={rt:.2} one_way_us={:.2} n={n}", rt / 2.0);
    }
    Ok(())
}

//! The HTTP gateway: the seed's port-5580 web face of the broker.
//!
//! Built on tokio + axum; holds thousands of waiting `SYNC-` requests as
//! futures on a small runtime (two threads by default), all talking to the
//! broker through one [`bridge::Bridge`] I/O thread. Runs embedded in
//! `zmws broker` or standalone as `zmws gateway`; routes are documented in
//! `docs/HTTP.md`.
//!
//! ```no_run
//! let cfg = zmws::gateway::GatewayConfig { broker: "tcp://127.0.0.1:5555".into(), ..Default::default() };
//! let gw = zmws::gateway::start(cfg).unwrap();
//! println!("listening on http://{}", gw.local_addr());
//! gw.stop();
//! ```

pub mod bridge;
pub mod metrics;
pub mod params;
mod routes;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{parse_listen, HttpSection};
use crate::error::{Error, Result};
use bridge::{Bridge, BridgeConfig};

/// How long a stopping gateway lets open connections finish.
const DRAIN: Duration = Duration::from_secs(3);

/// Everything the gateway needs.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Listen address (`127.0.0.1:5580`; port 0 picks a free one).
    pub listen: String,
    /// Broker client endpoint to connect to.
    pub broker: String,
    /// Bearer token required on every route but `/healthz`.
    pub token: Option<String>,
    /// Largest request body; larger gets 413.
    pub max_body_bytes: usize,
    /// `SYNC-` wait without `?timeout_ms=`.
    pub default_timeout: Duration,
    /// Largest accepted `timeout_ms`.
    pub max_timeout: Duration,
    /// Deadline of administrative broker requests (then 503).
    pub broker_timeout: Duration,
    /// Async runtime worker threads.
    pub threads: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig::from_section(&HttpSection::default(), "tcp://127.0.0.1:5555".into())
    }
}

impl GatewayConfig {
    /// The gateway an `[http]` section describes, talking to `broker`.
    pub fn from_section(http: &HttpSection, broker: String) -> GatewayConfig {
        GatewayConfig {
            listen: http.endpoint.clone(),
            broker,
            token: http.token.clone(),
            max_body_bytes: http.max_body_bytes,
            default_timeout: Duration::from_millis(http.default_timeout_ms),
            max_timeout: Duration::from_millis(http.max_timeout_ms),
            broker_timeout: Duration::from_millis(http.broker_timeout_ms),
            threads: http.threads.max(1),
        }
    }
}

/// A running gateway. Dropping it stops it.
pub struct GatewayHandle {
    addr: SocketAddr,
    bridge: Bridge,
    shutdown: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl GatewayHandle {
    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the server thread ended (it only does on a fatal error or stop).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().map(|t| t.is_finished()).unwrap_or(true)
    }

    /// Stops accepting, fails waiting requests with 503, lets open
    /// connections finish (up to 3 s) and joins the threads.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if self.thread.is_none() {
            return;
        }
        self.bridge.shutdown();
        let _ = self.shutdown.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for GatewayHandle {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Binds the listen address, connects to the broker and serves on
/// background threads. Bind errors are returned here.
pub fn start(config: GatewayConfig) -> Result<GatewayHandle> {
    let listener =
        bind(&config.listen).map_err(|(addr, e)| Error::Io(format!("cannot listen on http://{addr}: {e}")))?;
    start_on(listener, config)
}

/// Binds a listen address (`host:port`) for [`start_on`]; the error carries
/// the resolved address, so callers can tell "address in use" apart.
pub fn bind(listen: &str) -> std::result::Result<std::net::TcpListener, (String, std::io::Error)> {
    let addr = parse_listen(listen)
        .map_err(|m| (listen.to_string(), std::io::Error::new(std::io::ErrorKind::InvalidInput, m)))?;
    let listener = std::net::TcpListener::bind(addr).map_err(|e| (addr.to_string(), e))?;
    // std listens with a backlog of 128; bursts of a thousand clients need more.
    // SAFETY: listen(2) on a socket we own; a second call only resizes the backlog.
    unsafe {
        libc::listen(std::os::unix::io::AsRawFd::as_raw_fd(&listener), 1024);
    }
    Ok(listener)
}

/// Serves on an already bound listener (`config.listen` is then ignored).
pub fn start_on(listener: std::net::TcpListener, config: GatewayConfig) -> Result<GatewayHandle> {
    listener.set_nonblocking(true).map_err(|e| Error::Io(format!("listener: {e}")))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads.max(1))
        .thread_name("zmws-http")
        .enable_all()
        .build()
        .map_err(|e| Error::Io(format!("cannot start the HTTP runtime: {e}")))?;
    let listener = {
        let _guard = rt.enter();
        tokio::net::TcpListener::from_std(listener).map_err(|e| Error::Io(format!("listener: {e}")))?
    };
    let local = listener.local_addr().map_err(|e| Error::Io(format!("listener address: {e}")))?;
    let bridge = Bridge::start(BridgeConfig {
        endpoint: config.broker.clone(),
        admin_timeout: config.broker_timeout,
        connect_grace: config.broker_timeout,
    })?;
    let state =
        Arc::new(routes::AppState { bridge: bridge.clone(), config: config.clone(), stats: Default::default() });
    let app = routes::router(state);
    let (tx, rx) = watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("zmws-http-serve".into())
        .spawn(move || {
            rt.block_on(async move {
                let mut on_stop = rx.clone();
                let mut drain = rx;
                let server = axum::serve(listener, app).with_graceful_shutdown(async move {
                    let _ = on_stop.wait_for(|v| *v).await;
                });
                tokio::select! {
                    r = server => {
                        if let Err(e) = r {
                            tracing::error!(error = %e, "HTTP server failed");
                        }
                    }
                    _ = async move {
                        let _ = drain.wait_for(|v| *v).await;
                        tokio::time::sleep(DRAIN).await;
                    } => tracing::warn!("HTTP connections still open after {} s: closing them", DRAIN.as_secs()),
                }
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        })
        .map_err(|e| Error::Io(format!("cannot start the HTTP thread: {e}")))?;
    tracing::info!(http = %format!("http://{local}"), broker = %config.broker, auth = config.token.is_some(), "HTTP gateway listening");
    Ok(GatewayHandle { addr: local, bridge, shutdown: tx, thread: Some(thread) })
}

/// Runs a gateway until `stop` becomes true (standalone `zmws gateway`).
pub fn run(config: GatewayConfig, stop: &AtomicBool) -> Result<()> {
    let gw = start(config)?;
    while !stop.load(Ordering::SeqCst) {
        if gw.is_finished() {
            return Err(Error::Io("the HTTP server stopped unexpectedly".into()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    tracing::info!("HTTP gateway stopping");
    gw.stop();
    Ok(())
}

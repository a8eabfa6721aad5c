//! The accept loop: a slot under the connection cap before each accept (at the cap: wait and
//! warn), a back-off when out of descriptors (never a spin), and at shutdown the listener closed
//! and its connections waited for.

use std::{
    future::Future,
    pin::pin,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{net::TcpListener, sync::watch};
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::TcpConnectInfo;

use super::{
    conn::{Conn, Handler, ResponseBody},
    policy::{Limits, Policy, Protocol},
};
use crate::error::ServerError;

/// A warning logged at most once per interval, saying how many were held back.
struct Throttled {
    every: Duration,
    last: Option<Instant>,
    held: u64,
}

impl Throttled {
    fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            held: 0,
        }
    }

    /// Calls `log` with the number of occurrences since the last call that logged, if due.
    fn log(&mut self, log: impl FnOnce(u64)) {
        let now = Instant::now();
        if self
            .last
            .is_none_or(|t| now.duration_since(t) >= self.every)
        {
            log(self.held);
            self.last = Some(now);
            self.held = 0;
        } else {
            self.held += 1;
        }
    }
}

/// Whether an accept failed for want of descriptors (or kernel memory): worth backing off.
fn out_of_descriptors(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    matches!(
        Errno::from_io_error(e),
        Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM)
    )
}

/// Whether an accept failed for the connection's own sake (the next one may well succeed).
fn connection_failed(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::ConnectionAborted | K::ConnectionReset | K::Interrupted | K::WouldBlock | K::TimedOut
    )
}

/// Serves `service` on `listener` (`name` in the logs) until `shutdown` resolves, then closes
/// the listener, sends GOAWAY on every connection and waits for them to end (at most
/// `connection_grace` for requests in flight).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve<S, B>(
    name: &'static str,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    protocol: Protocol,
    limits: Limits,
    policy: Arc<dyn Policy>,
    service: S,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError>
where
    S: Handler<B>,
    B: ResponseBody,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    let mut at_cap = Throttled::new(Duration::from_secs(10));
    let mut no_fds = Throttled::new(Duration::from_secs(10));
    let mut backoff = Duration::ZERO;
    loop {
        let permit = match limits.connections.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                at_cap.log(|held| {
                    tracing::warn!(
                        listener = name,
                        max_connections = limits.max_connections,
                        since_last_warning = held,
                        "connection cap reached: new connections wait in the listen queue \
                         (see --max-connections)"
                    );
                });
                policy.refused("connections");
                tokio::select! {
                    permit = limits.connections.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = Duration::ZERO;
                accepted
            }
            Err(e) if connection_failed(&e) => continue,
            Err(e) => {
                // Out of descriptors (or another failure of the listener itself): retrying at
                // once would spin a core while serving nobody. Wait, longer each time.
                backoff =
                    (backoff * 2).clamp(Duration::from_millis(50), Duration::from_millis(1600));
                let kind = if out_of_descriptors(&e) {
                    "out of file descriptors"
                } else {
                    "accept failed"
                };
                no_fds.log(|held| {
                    tracing::warn!(
                        listener = name,
                        error = %e,
                        retry_in = ?backoff,
                        since_last_warning = held,
                        "{kind}: not accepting for a while (raise the descriptor limit, \
                         or lower --max-connections)"
                    );
                });
                drop(permit);
                tokio::select! {
                    () = tokio::time::sleep(backoff) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        let conn = Conn {
            info: TcpConnectInfo {
                local_addr: stream.local_addr().ok(),
                remote_addr: Some(peer),
            },
            limits: limits.clone(),
            policy: policy.clone(),
            protocol,
            stop: stop_rx.clone(),
            _slot: permit,
        };
        tokio::spawn(conn.run(stream, tls.clone(), service.clone()));
    }
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(true);
    // Every connection task holds a receiver: closed once the last has ended.
    stop_tx.closed().await;
    Ok(())
}

//! A TCP proxy on 127.0.0.1 in front of RabbitMQ, run by the test itself, that breaks
//! connections on demand: [`Proxy::cut`] closes every connection through it (as a crashed
//! broker or a reset network would), [`Proxy::black_hole`] stops forwarding on them without
//! closing anything (as a suspended broker or a silent network would: only heartbeats can
//! tell). Connections made afterwards are forwarded normally. Nothing leaves loopback.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to the connections it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Forward,
    Cut,
    BlackHole,
}

/// A running proxy; stops (closing everything) when dropped.
pub struct Proxy {
    address: SocketAddr,
    /// The fate of each live connection accepted since the last cut or black hole.
    fates: Arc<Mutex<Vec<watch::Sender<Fate>>>>,
    /// Black-holed connections, held open (their fate's sender alive) until the proxy goes.
    held: Mutex<Vec<watch::Sender<Fate>>>,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        for fate in self.fates.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            fate.send_replace(Fate::Cut);
        }
        for fate in self.held.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            fate.send_replace(Fate::Cut);
        }
    }
}

impl Proxy {
    /// Starts a proxy on an ephemeral port of 127.0.0.1 forwarding to `upstream` (which must
    /// be a loopback address).
    pub async fn start(upstream: SocketAddr) -> Proxy {
        assert!(
            upstream.ip().is_loopback(),
            "the proxy only forwards to loopback, not {upstream}"
        );
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy on 127.0.0.1");
        let address = listener.local_addr().expect("the proxy's address");
        let fates: Arc<Mutex<Vec<watch::Sender<Fate>>>> = Arc::default();
        let accepted = Arc::new(AtomicU64::new(0));
        let (all, count) = (fates.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                count.fetch_add(1, Ordering::Relaxed);
                let (tx, rx) = watch::channel(Fate::Forward);
                all.lock().unwrap_or_else(|p| p.into_inner()).push(tx);
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        carry(client, server, rx).await;
                    }
                });
            }
        });
        Proxy {
            address,
            fates,
            held: Mutex::new(Vec::new()),
            accepted,
            task,
        }
    }

    /// `url` (an amqp:// URL of the upstream) pointed at the proxy instead.
    pub fn url(&self, url: &str, upstream: SocketAddr) -> String {
        // After the credentials (`user:pass@host`) or the scheme (`redis://host`).
        for before in ["@", "://"] {
            let from = format!("{before}{upstream}");
            if url.contains(&from) {
                return url.replacen(&from, &format!("{before}{}", self.address), 1);
            }
        }
        panic!("{url} does not name {upstream}")
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Closes every connection through the proxy now.
    pub fn cut(&self) {
        self.doom(Fate::Cut);
    }

    /// Stops forwarding on every connection through the proxy now, leaving them open.
    pub fn black_hole(&self) {
        self.doom(Fate::BlackHole);
    }

    fn doom(&self, fate: Fate) {
        let doomed: Vec<_> = self
            .fates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for f in &doomed {
            f.send_replace(fate);
        }
        if fate == Fate::BlackHole {
            self.held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(doomed);
        }
    }
}

/// Forwards both ways until the connection's fate changes: cut closes both sides, a black
/// hole keeps them open and silent until the proxy goes.
async fn carry(mut client: TcpStream, mut server: TcpStream, mut fate: watch::Receiver<Fate>) {
    let (mut a, mut b) = ([0u8; 16 * 1024], [0u8; 16 * 1024]);
    loop {
        tokio::select! {
            read = client.read(&mut a) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => if server.write_all(&a[..n]).await.is_err() { return },
            },
            read = server.read(&mut b) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => if client.write_all(&b[..n]).await.is_err() { return },
            },
            changed = fate.changed() => {
                let now = *fate.borrow();
                match (changed, now) {
                    (Err(_), _) | (Ok(()), Fate::Cut) => return,
                    (Ok(()), Fate::BlackHole) => {
                        // Hold both sockets, read nothing, send nothing, until the proxy goes.
                        let _ = fate.wait_for(|f| *f == Fate::Cut).await;
                        return;
                    }
                    (Ok(()), Fate::Forward) => {}
                }
            }
        }
    }
}

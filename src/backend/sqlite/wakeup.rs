//! Waking the processes that share a broker file when messages arrive for them.
//!
//! Each process listens on a Unix datagram socket in the abstract namespace (no file to clean
//! up, gone with the process) and records its name in the `processes` table. A commit that
//! makes messages ready sends an empty datagram to every other process; the receiving process
//! then looks for work. A lost datagram costs at most one periodic check (see `engine.rs`),
//! never a message. Where abstract sockets do not exist (not Linux), the periodic check is
//! the only wake-up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// This process's listening socket.
#[derive(Debug)]
pub(super) struct Wakeup {
    #[cfg(target_os = "linux")]
    socket: std::os::unix::net::UnixDatagram,
    name: String,
    stopping: Arc<AtomicBool>,
}

impl Wakeup {
    /// Binds a fresh socket; `None` where that is not possible (the periodic check remains).
    pub(super) fn bind() -> Option<Wakeup> {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            use std::os::unix::net::{SocketAddr, UnixDatagram};
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let name = format!("carrot-{}-{nanos:x}", std::process::id());
            let addr = SocketAddr::from_abstract_name(name.as_bytes()).ok()?;
            let socket = UnixDatagram::bind_addr(&addr).ok()?;
            socket.set_nonblocking(false).ok()?;
            Some(Wakeup {
                socket,
                name,
                stopping: Arc::new(AtomicBool::new(false)),
            })
        }
        #[cfg(not(target_os = "linux"))]
        {
            None
        }
    }

    /// The name other processes send to.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// Calls `wake` for every datagram received, on a thread of its own, until [`Self::stop`].
    pub(super) fn listen(&self, wake: impl Fn() + Send + 'static) -> std::io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            let socket = self.socket.try_clone()?;
            let stopping = self.stopping.clone();
            std::thread::Builder::new()
                .name("carrot-sqlite-wakeup".into())
                .spawn(move || {
                    let mut buf = [0u8; 16];
                    while socket.recv(&mut buf).is_ok() {
                        if stopping.load(Ordering::Acquire) {
                            break;
                        }
                        wake();
                    }
                })?;
        }
        #[cfg(not(target_os = "linux"))]
        drop(wake);
        Ok(())
    }

    /// Ends the listening thread.
    pub(super) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        notify(std::slice::from_ref(&self.name));
    }
}

/// Wakes the processes listening under these names; errors (a process gone) are ignored.
pub(super) fn notify(names: &[String]) {
    #[cfg(target_os = "linux")]
    {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::net::{SocketAddr, UnixDatagram};
        if names.is_empty() {
            return;
        }
        thread_local! {
            static SENDER: Option<UnixDatagram> = UnixDatagram::unbound()
                .and_then(|s| s.set_nonblocking(true).map(|()| s))
                .ok();
        }
        SENDER.with(|sender| {
            let Some(sender) = sender else { return };
            for name in names {
                if let Ok(addr) = SocketAddr::from_abstract_name(name.as_bytes()) {
                    let _ = sender.send_to_addr(&[], &addr);
                }
            }
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = names;
}

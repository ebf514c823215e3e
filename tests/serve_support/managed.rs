//! `carrot serve` with its management API (`--management`) for the tests that drive it from
//! outside (a browser, rabbitmqadmin): one server per test, with the users, vhost and
//! permissions of `tests/fixtures/access-definitions.json` (guest/guest an administrator
//! from loopback, carrot-monitor/carrot-monitor-pw with tag monitoring), on loopback ports
//! of its own, in a thread with its own runtime; stopped when dropped.

#![allow(dead_code)] // each test file uses its part

use std::net::SocketAddr;

/// A running `carrot serve --management 127.0.0.1:0` of one broker URL.
pub struct Managed {
    /// The AMQP listener.
    pub amqp: SocketAddr,
    /// The management API's listener.
    pub http: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Managed {
    /// Serves `broker` (`memory://NAME` or `sqlite://PATH`) until dropped.
    pub fn start(broker: &str) -> Managed {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let broker = broker.to_string();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("a runtime for carrot serve");
            runtime.block_on(async move {
                let any: SocketAddr = "127.0.0.1:0".parse().expect("an address");
                let mut config = carrot::server::ServerConfig::new(&broker, any);
                config.management = Some(any);
                config.definitions = Some(
                    concat!(
                        env!("CARGO_MANIFEST_DIR"),
                        "/tests/fixtures/access-definitions.json"
                    )
                    .into(),
                );
                let server = match carrot::server::Server::bind(config).await {
                    Ok(server) => server,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("carrot serve {broker}: {e}")));
                        return;
                    }
                };
                let addresses = server
                    .local_addr()
                    .map_err(|e| e.to_string())
                    .and_then(|amqp| {
                        server
                            .management_addr()
                            .map(|http| (amqp, http))
                            .ok_or_else(|| "no management address".to_string())
                    });
                let _ = ready_tx.send(addresses);
                server
                    .run(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        let (amqp, http) = ready_rx
            .recv()
            .expect("carrot serve's thread answers")
            .unwrap_or_else(|e| panic!("carrot serve does not start: {e}"));
        Managed {
            amqp,
            http,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The AMQP URL of `user` in `vhost` (percent-encoded by the caller, `%2F` for `/`).
    pub fn amqp_url(&self, user: &str, password: &str, vhost: &str) -> String {
        format!(
            "amqp://{user}:{password}@127.0.0.1:{}/{vhost}",
            self.amqp.port()
        )
    }

    /// guest's AMQP URL in vhost `/`.
    pub fn guest_url(&self) -> String {
        self.amqp_url("guest", "guest", "%2F")
    }

    /// The management API's base URL (`http://127.0.0.1:PORT`).
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http)
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // The server stops within a few seconds (it bounds its own shutdown).
            let _ = thread.join();
        }
    }
}

/// The first executable file named `name` in the directories of `PATH`.
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    which_all(name).into_iter().next()
}

/// Every executable file named `name` in the directories of `PATH`, in their order, each
/// once (/bin is often /usr/bin).
pub fn which_all(name: &str) -> Vec<std::path::PathBuf> {
    let Some(path) = std::env::var_os("PATH") else {
        return Vec::new();
    };
    let mut seen = std::collections::HashSet::new();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .filter(|file| is_executable(file))
        .filter(|file| seen.insert(std::fs::canonicalize(file).unwrap_or_else(|_| file.clone())))
        .collect()
}

#[cfg(unix)]
fn is_executable(file: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(file).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(file: &std::path::Path) -> bool {
    file.is_file()
}

/// A program a test needs: the path in `var` when it is set, else `names`' first on `PATH`.
pub fn program(var: &str, names: &[&str]) -> Option<std::path::PathBuf> {
    match std::env::var_os(var) {
        Some(path) if !path.is_empty() => Some(path.into()),
        _ => names.iter().find_map(|name| which(name)),
    }
}

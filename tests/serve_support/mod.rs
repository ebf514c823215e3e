//! `carrot serve` for the suites that run through it (conformance, CLI): one server per
//! embedded broker and test process, on a loopback port, in a thread of its own so that it
//! outlives every test's runtime.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// The amqp:// URL of a `carrot serve` of `broker` (`memory://NAME` or `sqlite://PATH`),
/// started on first use.
pub fn served(broker: &str) -> String {
    static SERVERS: OnceLock<Mutex<HashMap<String, u16>>> = OnceLock::new();
    let mut servers = SERVERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let port = *servers.entry(broker.to_string()).or_insert_with(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        let url = broker.to_string();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("a runtime for carrot serve");
            runtime.block_on(async move {
                let listen = "127.0.0.1:0".parse().expect("an address");
                let mut config = carrot::server::ServerConfig::new(&url, listen);
                // The users, vhost and permissions of the access scenarios, as RabbitMQ gets
                // them (tests/conformance/backends.rs).
                config.definitions = Some(access_definitions());
                let server = carrot::server::Server::bind(config)
                    .await
                    .expect("carrot serve binds");
                let port = server.local_addr().expect("its address").port();
                tx.send(port).expect("the port is taken");
                server.run(std::future::pending()).await;
            });
        });
        rx.recv().expect("carrot serve starts")
    });
    format!("amqp://guest:guest@127.0.0.1:{port}/%2F")
}

/// The RabbitMQ definitions every served broker (and the conformance suite's RabbitMQ) loads:
/// user `carrot-limited` (password `carrot-limited-pw`) may configure, write and read only
/// names that start with `carrot-limited.` in vhost `/`; user `carrot-monitor`
/// (`carrot-monitor-pw`, tag monitoring) has no permission; vhost `carrot-test-vhost`, where
/// guest may do everything.
pub fn access_definitions() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/access-definitions.json")
}

/// A sqlite file of this test process for a served broker.
pub fn sqlite_file(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("carrot-serve-{name}-{}.db", std::process::id()))
}

/// The URLs of `carrot serve` over memory://NAME and over a sqlite file of NAME.
#[allow(dead_code)] // the suites that compare clients through both serves use it
pub fn served_urls(name: &str) -> Vec<String> {
    vec![
        served(&format!("memory://{name}")),
        served(&format!("sqlite://{}", sqlite_file(name).display())),
    ]
}

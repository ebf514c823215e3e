//! Real clients' own integration tests, run against RabbitMQ (the reference) and `carrot serve`
//! of memory:// and sqlite://: py-amqp's `t/integration/test_rmq.py` (plain and TLS) and kombu's
//! `t/integration/test_py_amqp.py`, fetched from PyPI by `tests/interop/client_suites.py` at
//! test time (the installed versions' source distributions; nothing of theirs is kept here).
//! Every test that passes on RabbitMQ must pass on both serves; the report lists each test's
//! outcome on each broker.

mod amqp_support;
#[path = "serve_support/process.rs"]
mod process;

use std::path::PathBuf;
use std::process::Command;

use amqp_support::{setting, skip_or_fail};
use process::{remove, sqlite_file, Served};

const RUNNER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/client_suites.py"
);

/// The port of an amqp(s):// URL of the test broker.
fn port(url: &str) -> u16 {
    url.split_once('@')
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|authority| authority.rsplit(':').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}"))
}

/// The folder of the CA certificate an amqps:// URL of the test broker names (`cacertfile`);
/// the broker's own certificate and key (for `localhost`) are beside it.
fn tls_folder(url: &str) -> PathBuf {
    let ca = url
        .split(['?', '&'])
        .find_map(|pair| pair.strip_prefix("cacertfile="))
        .unwrap_or_else(|| panic!("no cacertfile in {url}"));
    PathBuf::from(ca)
        .parent()
        .unwrap_or_else(|| panic!("no folder for {ca}"))
        .to_path_buf()
}

#[test]
fn py_amqp_and_kombu_integration_tests_pass_on_serve_wherever_they_pass_on_rabbitmq() {
    let python = std::env::var("CARROT_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let ready = Command::new(&python)
        .args(["-c", "import kombu, amqp, pytest"])
        .status()
        .is_ok_and(|s| s.success());
    if !ready {
        skip_or_fail(&format!(
            "{python} cannot import kombu, amqp and pytest: pip install kombu pytest"
        ));
        return;
    }
    let Some(amqp) = setting("CARROT_TEST_AMQP_URL", "RabbitMQ, the reference") else {
        return;
    };
    let Some(amqps) = setting("CARROT_TEST_AMQPS_URL", "RabbitMQ over TLS") else {
        return;
    };
    let tls = tls_folder(&amqps);
    let (cert, key) = (tls.join("server.pem"), tls.join("server.key"));
    let tls_args = [
        "--tls-cert",
        cert.to_str().expect("a path"),
        "--tls-key",
        key.to_str().expect("a path"),
    ];
    let file = sqlite_file("client-suites");
    let sqlite = format!("sqlite://{}", file.display());
    // A plain and a TLS listener each (separate processes; sqlite's share the file).
    let servers = [
        Served::start("memory://client-suites"),
        Served::start_with("memory://client-suites", &tls_args),
        Served::start(&sqlite),
        Served::start_with(&sqlite, &tls_args),
    ];
    let brokers = [
        format!("rabbitmq={},{}", port(&amqp), port(&amqps)),
        format!(
            "serve-memory={},{}",
            servers[0].address.port(),
            servers[1].address.port()
        ),
        format!(
            "serve-sqlite={},{}",
            servers[2].address.port(),
            servers[3].address.port()
        ),
    ];
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("client-suites");
    let mut command = Command::new(&python);
    command.arg(RUNNER).arg("--work").arg(&work);
    command.arg("--tls-ca").arg(tls.join("ca.pem"));
    for broker in &brokers {
        command.args(["--broker", broker]);
    }
    let out = command.output().expect("client_suites.py runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    drop(servers);
    remove(&file);
    assert!(
        out.status.success(),
        "{}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
}

//! The dashboard of `carrot serve --management` (the page at `/`) in a real headless
//! Chromium driven by Selenium (`tests/interop/dashboard.py`): the login form, a wrong
//! password refused ("Login failed"), guest/guest logged in, a queue declared here shown
//! empty, then with the 3 messages pika publishes, then empty again after its Purge button
//! (its confirm() accepted); pika's connection listed, and closed by its Close button (pika
//! sees 320 CONNECTION_FORCED). Over memory://, with the management API on a loopback port.
//!
//! Needs Chromium and its driver (Debian: `apt-get install chromium chromium-driver`; or
//! the paths in `CARROT_TEST_CHROMIUM` and `CARROT_TEST_CHROMEDRIVER`) and a Python 3 with
//! selenium and pika (`pip install selenium pika`; the interpreter is `CARROT_TEST_PYTHON`,
//! `python3` by default). Without them it says why it skipped, except under `CI=true`,
//! where it fails.

#![cfg(feature = "serve")]

mod amqp_support;
#[path = "serve_support/managed.rs"]
mod managed;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use amqp_support::*;
use carrot::QueueSpec;
use managed::{program, Managed};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/dashboard.py");
/// The browser's whole run (each of its waits is 10 s at most; it takes about 5 s).
const SCRIPT_LIMIT: Duration = Duration::from_secs(120);

/// Chromium and chromedriver, or why not.
fn browser() -> Option<(PathBuf, PathBuf)> {
    const INSTALL: &str = "install Chromium and its driver (Debian: apt-get install chromium \
        chromium-driver) or set CARROT_TEST_CHROMIUM and CARROT_TEST_CHROMEDRIVER to their paths";
    let Some(chromium) = program("CARROT_TEST_CHROMIUM", &["chromium", "chromium-browser"]) else {
        skip_or_fail(&format!("no chromium on PATH: {INSTALL}"));
        return None;
    };
    let Some(driver) = program("CARROT_TEST_CHROMEDRIVER", &["chromedriver"]) else {
        skip_or_fail(&format!("no chromedriver on PATH: {INSTALL}"));
        return None;
    };
    for (what, path) in [("chromium", &chromium), ("chromedriver", &driver)] {
        match std::process::Command::new(path).arg("--version").output() {
            Ok(out) if out.status.success() => {
                eprintln!("{what}: {}", String::from_utf8_lossy(&out.stdout).trim());
            }
            Ok(out) => {
                skip_or_fail(&format!(
                    "{} --version fails ({}): {}; {INSTALL}",
                    path.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
                return None;
            }
            Err(e) => {
                skip_or_fail(&format!("cannot run {}: {e}; {INSTALL}", path.display()));
                return None;
            }
        }
    }
    Some((chromium, driver))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_logs_in_shows_a_queue_purges_it_and_closes_a_connection() {
    let Some(python) = python_with("import selenium, pika", "selenium pika") else {
        return;
    };
    let Some((chromium, chromedriver)) = browser() else {
        return;
    };
    let served = Managed::start(&format!(
        "memory://{}",
        unique("dashboard", "broker").replace('.', "-")
    ));
    let queue = unique("dashboard", "queue");
    let conn = connect(&served.guest_url()).await;
    conn.declare_queue(&QueueSpec::new(&queue).durable(true))
        .await
        .expect("declare the queue the page shows");
    let _ = conn.close().await;

    let started = Instant::now();
    let output = bounded(
        "dashboard.py",
        SCRIPT_LIMIT,
        tokio::process::Command::new(&python)
            .arg(SCRIPT)
            .arg("--http")
            .arg(served.http_url())
            .arg("--amqp")
            .arg(served.guest_url())
            .arg("--queue")
            .arg(&queue)
            .arg("--chromium")
            .arg(&chromium)
            .arg("--chromedriver")
            .arg(&chromedriver)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|e| panic!("cannot run {python} {SCRIPT}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.lines().any(|l| l == "PASS"),
        "the dashboard in Chromium failed ({}, after {:.1} s):\n{stdout}\n{stderr}",
        output.status,
        started.elapsed().as_secs_f64()
    );
    eprintln!(
        "dashboard.py passed in {:.1} s:\n{stdout}",
        started.elapsed().as_secs_f64()
    );

    // What the page did, seen through the library: the queue is there, and empty.
    let conn = connect(&served.guest_url()).await;
    let info = conn
        .queue_info(&queue)
        .await
        .expect("the queue is still there after the page's Purge");
    assert_eq!(info.message_count, 0, "the page's Purge emptied the queue");
    let _ = conn.close().await;
}

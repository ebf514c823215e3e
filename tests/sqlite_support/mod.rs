//! What the tests of the `sqlite://` broker across real processes share: a broker file per
//! test, child processes with bounded waits, and the lines they report.
//!
//! Children are the test binary run again (`--exact child_entry`) with `CARROT_CHILD` naming
//! what to do: each test file has a `#[test] fn child_entry()` that hands its roles to
//! [`child_main`]. Children report on stdout with lines starting with [`MARK`] (see [`say`])
//! and wait for the end of their stdin where the parent decides when they stop (see
//! [`stdin_closed`]). Every wait on a child is bounded ([`WAIT`]), and a child left running
//! when a test ends (or fails) is killed (see [`Kid`]'s `Drop`).

#![allow(dead_code)] // each test file uses its part

use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use carrot::BrokerConnection;

/// The longest any single expected event (a line from a child, a child's exit, a message) may
/// take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);
/// What starts a child's report lines (libtest prints its own lines on the same stdout).
pub const MARK: &str = "@carrot ";

/// One test at a time, whichever fails.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A broker file of its own for one test, deleted (with its -wal and -shm) at the end.
pub struct BrokerFile {
    path: PathBuf,
}

impl BrokerFile {
    /// A fresh (absent) file named after this process and `name`.
    pub fn new(name: &str) -> BrokerFile {
        let path =
            std::env::temp_dir().join(format!("carrot-sqlite-{}-{name}.db", std::process::id()));
        let file = BrokerFile { path };
        file.remove();
        file
    }

    /// The `sqlite://` URL of the file.
    pub fn url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    fn remove(&self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
    }
}

impl Drop for BrokerFile {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Nanoseconds since the Unix epoch: a time every process agrees on.
pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64
}

/// The runtime of a test or a child: two workers, as a small application would have.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A line from a child (`None`: its stdout ended), tagged with the child's index.
pub type Event = (usize, Option<String>);

/// A child process running `child_entry`; killed (SIGKILL) and reaped on drop if still
/// running, so that no test leaves one behind, failing or not.
pub struct Kid {
    name: String,
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    stderr: Arc<Mutex<String>>,
}

impl Kid {
    /// Starts `role` on the broker at `url`; `params` become `CARROT_CHILD_<NAME>` variables.
    /// Its report lines go to `feed`, tagged with `index`.
    pub fn spawn(
        index: usize,
        role: &str,
        url: &str,
        params: &[(&str, &str)],
        feed: mpsc::Sender<Event>,
    ) -> Kid {
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut command = Command::new(exe);
        command
            .args([
                "--exact",
                "child_entry",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("CARROT_CHILD", role)
            .env("CARROT_CHILD_URL", url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in params {
            command.env(format!("CARROT_CHILD_{name}"), value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start child {role}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find(MARK) {
                    let _ = feed.send((index, Some(line[at + MARK.len()..].to_string())));
                }
            }
            let _ = feed.send((index, None));
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Kid {
            name: format!("{role}#{index} (pid {})", child.id()),
            stdin: child.stdin.take(),
            child,
            stderr,
        }
    }

    /// One child with its own feed.
    pub fn solo(role: &str, url: &str, params: &[(&str, &str)]) -> (Kid, Lines) {
        let (tx, rx) = mpsc::channel();
        (Kid::spawn(0, role, url, params, tx), Lines(rx))
    }

    /// Its role, index and pid, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the child wrote on stderr so far (for failure messages).
    pub fn stderr(&self) -> String {
        // The reader thread may still be copying what a dying child wrote last.
        std::thread::sleep(Duration::from_millis(50));
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Closes its stdin: the child's signal to finish.
    pub fn finish(&mut self) {
        self.stdin = None;
    }

    /// SIGKILL, then reaps it: a zombie would still look alive in /proc to the broker.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the child");
        self.child.wait().expect("reap the child");
    }

    /// Waits (at most [`WAIT`]) for the child to exit, and checks that it succeeded.
    pub fn wait_success(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                assert!(
                    status.success(),
                    "child {} failed ({status}); its stderr:\n{}",
                    self.name,
                    self.stderr()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "child {} did not exit within {WAIT:?}; its stderr:\n{}",
                self.name,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The report lines of one or more children.
pub struct Lines(pub mpsc::Receiver<Event>);

impl Lines {
    /// The next event from any child; fails after [`WAIT`] without one.
    pub fn next(&self, kids: &[&Kid]) -> Event {
        match self.0.recv_timeout(WAIT) {
            Ok(event) => event,
            Err(_) => panic!(
                "no report from the children within {WAIT:?}; their stderr:\n{}",
                describe(kids)
            ),
        }
    }

    /// The next line of this (only) child, which must start with `prefix`: returns the rest.
    pub fn expect(&self, kid: &Kid, prefix: &str) -> String {
        match self.next(&[kid]) {
            (_, Some(line)) => match line.strip_prefix(prefix) {
                Some(rest) => rest.trim().to_string(),
                None => panic!(
                    "child {} said {line:?}, expected {prefix:?}...; its stderr:\n{}",
                    kid.name,
                    kid.stderr()
                ),
            },
            (_, None) => panic!(
                "child {} ended before saying {prefix:?}; its stderr:\n{}",
                kid.name,
                kid.stderr()
            ),
        }
    }
}

/// The stderr of each child, under its name (for failure messages).
pub fn describe(kids: &[&Kid]) -> String {
    kids.iter()
        .map(|k| format!("--- {} ---\n{}", k.name, k.stderr()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs a child that does its work and exits; returns its report lines.
pub fn run_to_end(role: &str, url: &str, params: &[(&str, &str)]) -> Vec<String> {
    let (mut kid, lines) = Kid::solo(role, url, params);
    let mut said = Vec::new();
    while let (_, Some(line)) = lines.next(&[&kid]) {
        said.push(line);
    }
    kid.wait_success();
    said
}

/// Connects, failing the test with the URL if it cannot.
pub async fn connect(url: &str) -> BrokerConnection {
    BrokerConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// A comma-separated list of numbers.
pub fn parse_list(list: &str) -> Vec<u64> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("a number"))
        .collect()
}

/// Items separated by commas.
pub fn join(list: impl IntoIterator<Item = impl ToString>) -> String {
    list.into_iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

// In the children ------------------------------------------------------------------------------

/// The body of every test file's `child_entry`: does nothing unless `CARROT_CHILD` names a
/// role; otherwise runs `run(role, url)` on a [`runtime`] and fails if it fails.
pub fn child_main<F, Fut>(run: F)
where
    F: FnOnce(String, String) -> Fut,
    Fut: Future<Output = carrot::Result<()>>,
{
    let Ok(role) = std::env::var("CARROT_CHILD") else {
        return;
    };
    let url = param("URL");
    let rt = runtime();
    if let Err(e) = rt.block_on(run(role.clone(), url)) {
        panic!("child {role} failed: {e}");
    }
}

/// The child's parameter `CARROT_CHILD_<NAME>`.
pub fn param(name: &str) -> String {
    std::env::var(format!("CARROT_CHILD_{name}"))
        .unwrap_or_else(|_| panic!("CARROT_CHILD_{name} is not set"))
}

/// The child's parameter `CARROT_CHILD_<NAME>`, a number.
pub fn number(name: &str) -> u64 {
    param(name)
        .parse()
        .unwrap_or_else(|_| panic!("CARROT_CHILD_{name} is not a number"))
}

/// Reports to the parent: one line, written at once.
pub fn say(line: impl std::fmt::Display) {
    println!("{MARK}{line}");
}

/// Resolves when the parent closes our stdin (or dies).
pub fn stdin_closed() -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let _ = tx.send(());
    });
    rx
}

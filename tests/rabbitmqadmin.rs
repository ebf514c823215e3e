//! RabbitMQ's own management CLI, `rabbitmqadmin` v2 (github.com/rabbitmq/rabbitmqadmin-ng,
//! a Rust binary from crates.io), against `carrot serve --management` over memory:// and
//! over a sqlite:// file, as guest/guest:
//!
//! - lists vhosts, users, exchanges and queues (what the definitions fixture and the broker
//!   define);
//! - declares a queue, a direct exchange and a binding, and lists them;
//! - publishes to the queue (default exchange) and through the exchange and binding, then
//!   gets one message back ("hello"), counting through the library what is left;
//! - purges the queue (empty through the library);
//! - exports the definitions (the queue, exchange, binding, users, vhosts and permissions);
//! - imports definitions of a new vhost, user (password hashed as RabbitMQ does), permission,
//!   queue, exchange and binding, then lists them, uses them as the new user (publish through
//!   the imported exchange, get from the imported queue, AMQP login) and exports them;
//! - deletes the queue (gone through the library; deleting it again is a 404), the exchange
//!   and the imported vhost;
//! - and refuses a wrong password and a monitoring user's `list users`.
//!
//! Needs rabbitmqadmin 2 (`cargo install rabbitmqadmin --locked --version 2.35.0`): the path
//! in `CARROT_TEST_RABBITMQADMIN`, else `rabbitmqadmin` on `PATH`. Without it the tests say
//! why they skipped, except under `CI=true`, where they fail.

#![cfg(feature = "serve")]

mod amqp_support;
#[path = "serve_support/managed.rs"]
mod managed;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use amqp_support::*;
use base64::Engine;
use carrot::BrokerConnection;
use managed::{which_all, Managed};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The longest one rabbitmqadmin command may take (each takes milliseconds).
const COMMAND_LIMIT: Duration = Duration::from_secs(60);
const INSTALL: &str = "cargo install rabbitmqadmin --locked --version 2.35.0 (then put it on \
    PATH or set CARROT_TEST_RABBITMQADMIN to its path)";

/// rabbitmqadmin 2, or why not: the one of `CARROT_TEST_RABBITMQADMIN`, else the first
/// rabbitmqadmin 2 on `PATH` (RabbitMQ's Debian package puts the old Python rabbitmqadmin,
/// version 3.x, in /usr/bin).
fn rabbitmqadmin() -> Option<PathBuf> {
    let candidates = match std::env::var_os("CARROT_TEST_RABBITMQADMIN") {
        Some(path) if !path.is_empty() => vec![PathBuf::from(path)],
        _ => which_all("rabbitmqadmin"),
    };
    if candidates.is_empty() {
        skip_or_fail(&format!("no rabbitmqadmin on PATH: {INSTALL}"));
        return None;
    }
    let mut not_2 = Vec::new();
    for path in candidates {
        match std::process::Command::new(&path).arg("--version").output() {
            Ok(out) if out.status.success() => {
                let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if version.starts_with("rabbitmqadmin 2.") {
                    eprintln!("{}: {version}", path.display());
                    return Some(path);
                }
                not_2.push(format!("{} is {version:?}", path.display()));
            }
            Ok(out) => not_2.push(format!(
                "{} --version fails ({}): {}",
                path.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => not_2.push(format!("cannot run {}: {e}", path.display())),
        }
    }
    skip_or_fail(&format!(
        "no rabbitmqadmin 2 ({}): {INSTALL}",
        not_2.join("; ")
    ));
    None
}

/// rabbitmqadmin on one served broker.
struct Admin<'a> {
    program: &'a Path,
    served: &'a Managed,
    /// An empty HOME (no ~/.rabbitmqadmin.conf of the machine's) and the test's files.
    home: &'a Path,
}

impl Admin<'_> {
    /// Runs `rabbitmqadmin ARGS` as `user`.
    async fn run_as(&self, user: &str, password: &str, args: &[&str]) -> Output {
        let port = self.served.http.port().to_string();
        let mut command = tokio::process::Command::new(self.program);
        for (var, _) in std::env::vars_os() {
            if var.to_string_lossy().starts_with("RABBITMQADMIN_") {
                command.env_remove(var);
            }
        }
        command
            .env("HOME", self.home)
            .args(["--host", "127.0.0.1", "--port", &port])
            .args(["--username", user, "--password", password])
            .args(["--non-interactive", "--timeout", "30"])
            .args(args)
            .kill_on_drop(true);
        bounded(
            &format!("rabbitmqadmin {}", args.join(" ")),
            COMMAND_LIMIT,
            command.output(),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.program.display()))
    }

    /// Runs `rabbitmqadmin ARGS` as guest, which must succeed; its stdout.
    async fn ok(&self, args: &[&str]) -> String {
        self.ok_as("guest", "guest", args).await
    }

    async fn ok_as(&self, user: &str, password: &str, args: &[&str]) -> String {
        let out = self.run_as(user, password, args).await;
        let (stdout, stderr) = texts(&out);
        assert!(
            out.status.success(),
            "rabbitmqadmin {} (as {user}) failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
            args.join(" "),
            out.status
        );
        stdout
    }

    /// Runs `rabbitmqadmin ARGS` as `user`, which must fail; its stdout and stderr together.
    async fn fails_as(&self, user: &str, password: &str, args: &[&str]) -> String {
        let out = self.run_as(user, password, args).await;
        let (stdout, stderr) = texts(&out);
        assert!(
            !out.status.success(),
            "rabbitmqadmin {} (as {user}) succeeded, expected a failure:\nstdout: {stdout}\nstderr: {stderr}",
            args.join(" ")
        );
        format!("{stdout}{stderr}")
    }

    /// `definitions export --stdout`, parsed.
    async fn export(&self) -> Value {
        let out = self.ok(&["definitions", "export", "--stdout"]).await;
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("definitions export prints JSON ({e}):\n{out}"))
    }
}

fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The lines of a listing that name `name` as a whole word (a column).
fn rows_with<'a>(listing: &'a str, name: &str) -> Vec<&'a str> {
    listing
        .lines()
        .filter(|line| {
            line.split(|c: char| c.is_whitespace() || c == '│' || c == '|')
                .any(|word| word == name)
        })
        .collect()
}

fn assert_lists(listing: &str, name: &str, what: &str) {
    assert!(
        !rows_with(listing, name).is_empty(),
        "{what} lists no {name:?}:\n{listing}"
    );
}

/// A password hash as RabbitMQ writes it (`rabbit_password_hashing_sha256`): base64 of a
/// 4-byte salt and the SHA-256 of salt and password.
fn rabbitmq_hash(password: &str) -> String {
    let salt = *b"cr0t";
    let mut salted = salt.to_vec();
    salted.extend_from_slice(
        &Sha256::new()
            .chain_update(salt)
            .chain_update(password)
            .finalize(),
    );
    base64::engine::general_purpose::STANDARD.encode(salted)
}

/// The element of `defs[section]` with all of `fields`.
fn find<'a>(defs: &'a Value, section: &str, fields: &Value) -> Option<&'a Value> {
    let wanted = fields.as_object().expect("fields are an object");
    defs[section]
        .as_array()
        .unwrap_or_else(|| panic!("the definitions have no {section} array: {defs}"))
        .iter()
        .find(|item| wanted.iter().all(|(k, v)| &item[k] == v))
}

fn assert_defines(defs: &Value, section: &str, fields: Value) {
    assert!(
        find(defs, section, &fields).is_some(),
        "the definitions' {section} have no {fields}: {}",
        defs[section]
    );
}

/// The tags of a user of the definitions (an array, or RabbitMQ 3.x's comma-separated text).
fn tags(defs: &Value, user: &str) -> Vec<String> {
    let found = find(defs, "users", &json!({ "name": user }))
        .unwrap_or_else(|| panic!("the definitions have no user {user}: {}", defs["users"]));
    match &found["tags"] {
        Value::Array(tags) => tags
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect(),
        Value::String(tags) => tags.split(',').map(str::to_string).collect(),
        other => panic!("user {user}'s tags are {other}"),
    }
}

async fn ready(conn: &BrokerConnection, queue: &str) -> u32 {
    conn.queue_info(queue)
        .await
        .unwrap_or_else(|e| panic!("queue {queue} through the library: {e}"))
        .message_count
}

/// Every step on the served `broker`.
async fn scenario(program: &Path, broker: &str) {
    let served = Managed::start(broker);
    let home = std::env::temp_dir().join(unique("rabbitmqadmin", "home"));
    std::fs::create_dir_all(&home).expect("a temporary HOME");
    let admin = Admin {
        program,
        served: &served,
        home: &home,
    };
    let queue = unique("rabbitmqadmin", "queue");
    let exchange = unique("rabbitmqadmin", "exchange");
    let key = "carrot-key";

    // What the fixture and the broker define.
    let vhosts = admin.ok(&["list", "vhosts"]).await;
    assert_lists(&vhosts, "/", "list vhosts");
    assert_lists(&vhosts, "carrot-test-vhost", "list vhosts");
    let users = admin.ok(&["list", "users"]).await;
    for user in ["guest", "carrot-monitor", "carrot-limited"] {
        assert_lists(&users, user, "list users");
    }
    let exchanges = admin.ok(&["list", "exchanges"]).await;
    for name in ["amq.direct", "amq.fanout", "amq.topic", "amq.headers"] {
        assert_lists(&exchanges, name, "list exchanges");
    }
    // The listings whose objects rabbitmqadmin decodes field by field: a carrot serve
    // answer missing one of them fails the command.
    let nodes = admin.ok(&["list", "nodes"]).await;
    assert_lists(&nodes, "carrot@localhost", "list nodes");
    admin.ok(&["list", "channels"]).await;
    admin.ok(&["list", "consumers"]).await;
    admin.ok(&["list", "connections"]).await;
    admin.ok(&["show", "overview"]).await;
    admin.ok(&["show", "churn"]).await;
    let queues = admin.ok(&["list", "queues"]).await;
    assert!(
        rows_with(&queues, &queue).is_empty(),
        "list queues before any declare: {queues}"
    );

    // Declarations.
    admin
        .ok(&["declare", "queue", "--name", &queue, "--durable", "true"])
        .await;
    admin
        .ok(&[
            "declare",
            "exchange",
            "--name",
            &exchange,
            "--type",
            "direct",
            "--durable",
            "true",
        ])
        .await;
    admin
        .ok(&[
            "declare",
            "binding",
            "--source",
            &exchange,
            "--destination-type",
            "queue",
            "--destination",
            &queue,
            "--routing-key",
            key,
        ])
        .await;
    assert_lists(&admin.ok(&["list", "queues"]).await, &queue, "list queues");
    assert_lists(
        &admin.ok(&["list", "exchanges"]).await,
        &exchange,
        "list exchanges",
    );
    let bindings = admin.ok(&["list", "bindings"]).await;
    assert!(
        rows_with(&bindings, &exchange)
            .iter()
            .any(|row| rows_with(row, &queue).len() == 1 && rows_with(row, key).len() == 1),
        "list bindings has no {exchange} -> {queue} with key {key}:\n{bindings}"
    );

    // Publish (to the queue, and through the exchange's binding), get, purge.
    let conn = connect(&served.guest_url()).await;
    let published = admin
        .ok(&[
            "publish",
            "message",
            "--routing-key",
            &queue,
            "--payload",
            "hello",
        ])
        .await;
    assert!(
        published.contains("routed successfully"),
        "publish message to the queue: {published}"
    );
    let published = admin
        .ok(&[
            "publish",
            "message",
            "--exchange",
            &exchange,
            "--routing-key",
            key,
            "--payload",
            "through-the-exchange",
        ])
        .await;
    assert!(
        published.contains("routed successfully"),
        "publish message through the exchange: {published}"
    );
    assert_eq!(ready(&conn, &queue).await, 2, "2 messages published");
    let got = admin
        .ok(&["get", "messages", "--queue", &queue, "--count", "1"])
        .await;
    assert!(
        !rows_with(&got, "hello").is_empty(),
        "get messages shows the first message's payload: {got}"
    );
    assert!(
        !got.contains("through-the-exchange"),
        "get messages --count 1 shows one message: {got}"
    );
    assert_eq!(
        ready(&conn, &queue).await,
        1,
        "get messages (ack_requeue_false) took one"
    );
    admin.ok(&["purge", "queue", "--name", &queue]).await;
    assert_eq!(ready(&conn, &queue).await, 0, "purge queue emptied it");

    // Export.
    let defs = admin.export().await;
    assert_defines(
        &defs,
        "queues",
        json!({"name": queue, "vhost": "/", "durable": true}),
    );
    assert_defines(
        &defs,
        "exchanges",
        json!({"name": exchange, "vhost": "/", "type": "direct", "durable": true}),
    );
    assert_defines(
        &defs,
        "bindings",
        json!({"source": exchange, "vhost": "/", "destination": queue, "destination_type": "queue", "routing_key": key}),
    );
    assert!(
        tags(&defs, "guest").iter().any(|t| t == "administrator"),
        "guest is an administrator in the export: {}",
        defs["users"]
    );
    assert!(
        tags(&defs, "carrot-monitor")
            .iter()
            .any(|t| t == "monitoring"),
        "carrot-monitor is tagged monitoring in the export: {}",
        defs["users"]
    );
    assert_defines(&defs, "vhosts", json!({"name": "/"}));
    assert_defines(&defs, "vhosts", json!({"name": "carrot-test-vhost"}));
    assert_defines(
        &defs,
        "permissions",
        json!({"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}),
    );

    // Import a vhost, a user with its permission there, a queue, an exchange and a binding.
    let vhost = unique("rabbitmqadmin", "vhost");
    let user = unique("rabbitmqadmin", "user");
    let password = "imported-password";
    let imported_queue = unique("rabbitmqadmin", "imported-queue");
    let imported_exchange = unique("rabbitmqadmin", "imported-exchange");
    let file = home.join("import.json");
    let import = json!({
        "users": [{
            "name": user,
            "password_hash": rabbitmq_hash(password),
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": ["management"],
            "limits": {},
        }],
        "vhosts": [{"name": vhost, "metadata": {"description": "imported by rabbitmqadmin", "tags": []}}],
        "permissions": [{"user": user, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}],
        "queues": [{"name": imported_queue, "vhost": vhost, "durable": true, "auto_delete": false, "arguments": {}}],
        "exchanges": [{"name": imported_exchange, "vhost": vhost, "type": "fanout", "durable": true, "auto_delete": false, "internal": false, "arguments": {}}],
        "bindings": [{"source": imported_exchange, "vhost": vhost, "destination": imported_queue, "destination_type": "queue", "routing_key": "", "arguments": {}}],
    });
    std::fs::write(&file, import.to_string()).expect("write the definitions file");
    let file_arg = file.to_str().expect("a UTF-8 path");
    admin
        .ok(&["definitions", "import", "--file", file_arg])
        .await;
    assert_lists(&admin.ok(&["list", "vhosts"]).await, &vhost, "list vhosts");
    assert_lists(&admin.ok(&["list", "users"]).await, &user, "list users");
    assert_lists(
        &admin.ok(&["list", "queues", "--vhost", &vhost]).await,
        &imported_queue,
        "list queues --vhost (imported)",
    );
    // The imported user logs in with its password, and may use its vhost.
    let bindings = admin
        .ok_as(&user, password, &["list", "bindings", "--vhost", &vhost])
        .await;
    assert!(
        rows_with(&bindings, &imported_exchange)
            .iter()
            .any(|row| rows_with(row, &imported_queue).len() == 1),
        "the imported binding, listed by the imported user:\n{bindings}"
    );
    let published = admin
        .ok_as(
            &user,
            password,
            &[
                "publish",
                "message",
                "--vhost",
                &vhost,
                "--exchange",
                &imported_exchange,
                "--payload",
                "imported",
            ],
        )
        .await;
    assert!(
        published.contains("routed successfully"),
        "publish through the imported exchange: {published}"
    );
    let got = admin
        .ok_as(
            &user,
            password,
            &[
                "get",
                "messages",
                "--vhost",
                &vhost,
                "--queue",
                &imported_queue,
            ],
        )
        .await;
    assert!(
        !rows_with(&got, "imported").is_empty(),
        "get messages from the imported queue: {got}"
    );
    let imported = connect(&served.amqp_url(&user, password, &vhost)).await;
    assert_eq!(
        ready(&imported, &imported_queue).await,
        0,
        "the imported queue through the library, as the imported user"
    );
    let _ = imported.close().await;
    let defs = admin.export().await;
    assert_defines(&defs, "vhosts", json!({"name": vhost}));
    assert_defines(
        &defs,
        "permissions",
        json!({"user": user, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}),
    );
    assert_defines(
        &defs,
        "queues",
        json!({"name": imported_queue, "vhost": vhost, "durable": true}),
    );
    assert_defines(
        &defs,
        "bindings",
        json!({"source": imported_exchange, "vhost": vhost, "destination": imported_queue}),
    );
    assert!(
        tags(&defs, &user).iter().any(|t| t == "management"),
        "the imported user keeps its tag: {}",
        defs["users"]
    );

    // Refusals: a wrong password; a monitoring user may list queues but not users.
    let refused = admin.fails_as("guest", "wrong", &["list", "users"]).await;
    assert!(
        refused.contains("Login failed"),
        "a wrong password: {refused}"
    );
    admin
        .ok_as("carrot-monitor", "carrot-monitor-pw", &["list", "queues"])
        .await;
    let refused = admin
        .fails_as("carrot-monitor", "carrot-monitor-pw", &["list", "users"])
        .await;
    assert!(
        refused.contains("Not administrator user"),
        "a monitoring user's list users: {refused}"
    );

    // Deletions.
    admin.ok(&["delete", "queue", "--name", &queue]).await;
    assert!(
        conn.queue_info(&queue).await.is_err(),
        "delete queue: the library still finds {queue}"
    );
    let conn = connect(&served.guest_url()).await; // the failed passive declare closed a channel
    assert!(
        rows_with(&admin.ok(&["list", "queues"]).await, &queue).is_empty(),
        "delete queue: list queues still has {queue}"
    );
    let again = admin
        .fails_as("guest", "guest", &["delete", "queue", "--name", &queue])
        .await;
    assert!(again.contains("404"), "deleting it again: {again}");
    admin
        .ok(&["delete", "queue", "--name", &queue, "--idempotently"])
        .await;
    admin.ok(&["delete", "exchange", "--name", &exchange]).await;
    assert!(
        rows_with(&admin.ok(&["list", "exchanges"]).await, &exchange).is_empty(),
        "delete exchange: list exchanges still has {exchange}"
    );
    admin.ok(&["delete", "vhost", "--name", &vhost]).await;
    assert!(
        rows_with(&admin.ok(&["list", "vhosts"]).await, &vhost).is_empty(),
        "delete vhost: list vhosts still has {vhost}"
    );
    let _ = conn.close().await;
    let _ = std::fs::remove_dir_all(&home);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmqadmin_manages_carrot_serve_over_memory() {
    let Some(program) = rabbitmqadmin() else {
        return;
    };
    let broker = format!(
        "memory://{}",
        unique("rabbitmqadmin", "memory").replace('.', "-")
    );
    scenario(&program, &broker).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmqadmin_manages_carrot_serve_over_sqlite() {
    let Some(program) = rabbitmqadmin() else {
        return;
    };
    /// Removes the database's files, whatever happened.
    struct Files(PathBuf);
    impl Drop for Files {
        fn drop(&mut self) {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
            }
        }
    }
    let file =
        Files(std::env::temp_dir().join(format!("{}.db", unique("rabbitmqadmin", "sqlite"))));
    scenario(&program, &format!("sqlite://{}", file.0.display())).await;
}

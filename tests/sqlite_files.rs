//! A `sqlite://` path that is not a usable broker file is a clear `Error::Storage` (or a connect
//! error), never a panic and never a silently empty broker.

#![cfg(feature = "sqlite")]

use std::path::PathBuf;

use carrot::{BrokerConnection, Error, QueueSpec};

/// A temporary folder of this test, removed when the test ends (passed or failed).
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("carrot-files-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temporary folder");
    Scratch(dir)
}

async fn storage_error(path: &std::path::Path) -> String {
    match BrokerConnection::connect(&format!("sqlite://{}", path.display())).await {
        Err(Error::Storage {
            reason: message, ..
        }) => message,
        other => panic!("{}: expected Error::Storage, got {other:?}", path.display()),
    }
}

#[tokio::test]
async fn a_folder_is_refused() {
    let dir = scratch("folder");
    let message = storage_error(&dir).await;
    assert!(message.contains("folder"), "{message}");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_and_left_alone() {
    let dir = scratch("text");
    let path = dir.join("notes.txt");
    let text =
        "not a database, just some text that is long enough to fill a header....\n".repeat(20);
    std::fs::write(&path, &text).unwrap();
    let message = storage_error(&path).await;
    assert!(message.contains("not a SQLite database"), "{message}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

#[tokio::test]
async fn a_database_of_another_application_is_refused() {
    let dir = scratch("foreign");
    let path = dir.join("app.db");
    // A SQLite database of another application: a carrot broker file whose header's
    // application id (4 bytes, big-endian, at offset 68) is rewritten.
    {
        let conn = BrokerConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .expect("a new broker file");
        conn.close().await.expect("close");
    }
    // The last connection gone, the broker of this file shuts down (and checkpoints).
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[68..72].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    std::fs::write(&path, bytes).unwrap();
    let message = storage_error(&path).await;
    assert!(message.contains("another application"), "{message}");
}

#[tokio::test]
async fn a_read_only_file_is_refused() {
    if is_root() {
        // Root writes through file permissions; /proc refuses new files even to root.
        let message = storage_error(std::path::Path::new("/proc/carrot-broker.db")).await;
        assert!(message.contains("cannot open"), "{message}");
        return;
    }
    let dir = scratch("readonly");
    let path = dir.join("broker.db");
    {
        let conn = BrokerConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        conn.declare_queue(&QueueSpec::new("q")).await.unwrap();
        conn.close().await.unwrap();
    }
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&path, perms).unwrap();
    let message = storage_error(&path).await;
    assert!(
        message.contains("read-only") || message.contains("cannot open"),
        "{message}"
    );
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn a_corrupt_broker_file_is_refused() {
    let dir = scratch("corrupt");
    let path = dir.join("broker.db");
    {
        let conn = BrokerConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        conn.declare_queue(&QueueSpec::new("q")).await.unwrap();
        conn.close().await.unwrap();
        drop(conn);
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 4096, "the file has more than one page");
    // Overwrite every page after the first (the schema's b-trees) with garbage.
    for b in &mut bytes[4096..] {
        *b = 0xA5;
    }
    std::fs::write(&path, bytes).unwrap();
    let message = storage_error(&path).await;
    assert!(
        message.contains("corrupt") || message.contains("not a SQLite database"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_ahead_log_stays_bounded_under_continuous_traffic() {
    // Every send, fetch and ack below is a commit of its own: without checkpoints that catch
    // up, the log would grow by a few pages per commit (hundreds of MB here).
    let dir = scratch("wal");
    let path = dir.join("broker.db");
    let conn = BrokerConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let publisher = carrot::Publisher::builder(&conn)
        .routing_key("q")
        .build()
        .await
        .unwrap();
    let mut consumer = carrot::Consumer::builder(&conn)
        .queue("q")
        .build()
        .await
        .unwrap();
    let wal = dir.join("broker.db-wal");
    let mut largest = 0;
    for i in 0..10_000u32 {
        publisher.send(&i).await.unwrap();
        let message = consumer
            .fetch()
            .await
            .unwrap()
            .expect("the message just sent");
        message.ack().unwrap();
        if i % 500 == 0 {
            largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        }
    }
    assert!(
        largest < 64 << 20,
        "the log reached {largest} bytes: checkpoints do not let it start over"
    );
    conn.close().await.unwrap();
}

/// The `user_version` of a broker file.
fn layout(path: &std::path::Path) -> i64 {
    let db = rusqlite::Connection::open(path).expect("open the file");
    db.query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("its layout version")
}

#[tokio::test]
async fn a_file_of_the_first_layout_is_migrated_with_every_message_kept() {
    let dir = scratch("migrate");
    let path = dir.join("broker.db");
    let url = format!("sqlite://{}", path.display());
    let conn = BrokerConnection::connect(&url).await.expect("a new broker");
    conn.declare_queue(&QueueSpec::new("kept"))
        .await
        .expect("declared");
    let publisher = carrot::Publisher::builder(&conn)
        .routing_key("kept")
        .build()
        .await
        .expect("a publisher");
    for n in 0..3 {
        publisher.send(&n).await.expect("sent");
    }
    drop(publisher);
    conn.close().await.expect("closed");
    drop(conn);
    let current = layout(&path);
    // Back to the first layout, as carrot 0.1 wrote it: no internal exchanges, no
    // exchange-to-exchange bindings.
    {
        let db = rusqlite::Connection::open(&path).expect("open the file");
        db.execute_batch(
            "DROP TABLE exchange_bindings; ALTER TABLE exchanges DROP COLUMN internal;
             DROP TABLE access_vhosts; DROP TABLE access_users; DROP TABLE access_permissions;
             PRAGMA user_version = 1;",
        )
        .expect("the first layout");
    }
    let conn = BrokerConnection::connect(&url)
        .await
        .expect("the old file opens");
    assert_eq!(layout(&path), current, "migrated to the current layout");
    assert_eq!(
        conn.queue_info("kept")
            .await
            .expect("the queue")
            .message_count,
        3
    );
    let mut consumer = carrot::Consumer::builder(&conn)
        .queue("kept")
        .auto_declare(false)
        .build()
        .await
        .expect("a consumer");
    for n in 0..3 {
        let message = consumer.fetch().await.expect("fetch").expect("a message");
        assert_eq!(message.decode::<i64>().expect("a number"), n);
        message.ack().expect("acked");
    }
    // What the new layout holds works on the migrated file.
    let none = carrot::FieldTable::new();
    conn.declare_exchange(&carrot::ExchangeSpec::new(
        "from",
        carrot::ExchangeType::Fanout,
    ))
    .await
    .expect("an exchange");
    conn.declare_exchange(
        &carrot::ExchangeSpec::new("to", carrot::ExchangeType::Fanout).internal(true),
    )
    .await
    .expect("an internal exchange");
    conn.bind_exchange("to", "from", "", &none)
        .await
        .expect("bound");
    conn.close().await.expect("closed");
}

/// A broker file written by the commit before layout 3 (carrot serve's users, vhosts and
/// permissions): `carrot declare exchange --type topic orders-x`, `declare queue orders`,
/// `declare bind --queue orders --exchange orders-x --routing-key 'order.#'`, then three
/// `publish --exchange orders-x --routing-key order.new "order N"`.
const LAYOUT_2: &[u8] = include_bytes!("fixtures/broker-layout-2.db");

#[tokio::test]
async fn a_file_written_by_the_previous_release_opens_with_every_message_and_binding() {
    let dir = scratch("layout2");
    let path = dir.join("broker.db");
    std::fs::write(&path, LAYOUT_2).expect("the fixture copied");
    assert_eq!(layout(&path), 2, "the fixture is of layout 2");
    let url = format!("sqlite://{}", path.display());
    let conn = BrokerConnection::connect(&url)
        .await
        .expect("the file of the previous release opens");
    assert!(layout(&path) > 2, "migrated");
    {
        let db = rusqlite::Connection::open(&path).expect("open the file");
        let tables: i64 = db
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name LIKE 'access_%'",
                [],
                |r| r.get(0),
            )
            .expect("the new tables");
        assert_eq!(tables, 3, "users, vhosts and permissions tables made");
    }
    assert_eq!(
        conn.queue_info("orders")
            .await
            .expect("the queue")
            .message_count,
        3
    );
    // The binding was kept: a new message through the topic exchange reaches the queue.
    carrot::Publisher::builder(&conn)
        .exchange("orders-x")
        .exchange_type(carrot::ExchangeType::Topic)
        .routing_key("order.paid")
        .build()
        .await
        .expect("a publisher on the kept exchange")
        .send("order 4")
        .await
        .expect("sent");
    let mut consumer = carrot::Consumer::builder(&conn)
        .queue("orders")
        .auto_declare(false)
        .build()
        .await
        .expect("a consumer");
    let mut bodies = Vec::new();
    while let Some(message) = consumer.fetch().await.expect("fetch") {
        bodies.push(String::from_utf8_lossy(message.body()).to_string());
        message.ack().expect("acked");
    }
    assert_eq!(bodies.len(), 4, "{bodies:?}");
    assert!(
        bodies[0].contains("order 1") && bodies[2].contains("order 3"),
        "{bodies:?}"
    );
    assert!(bodies[3].contains("order 4"), "{bodies:?}");
    conn.close().await.expect("closed");
}

#[tokio::test]
async fn a_file_of_a_newer_layout_is_refused_and_left_alone() {
    let dir = scratch("newer");
    let path = dir.join("broker.db");
    let url = format!("sqlite://{}", path.display());
    BrokerConnection::connect(&url)
        .await
        .expect("a new broker")
        .close()
        .await
        .expect("closed");
    let newer = layout(&path) + 1;
    {
        let db = rusqlite::Connection::open(&path).expect("open the file");
        db.execute_batch(&format!("PRAGMA user_version = {newer};"))
            .expect("a newer layout");
    }
    let before = std::fs::read(&path).expect("the file");
    let message = storage_error(&path).await;
    assert!(
        message.contains(&format!("layout version {newer}")),
        "{message}"
    );
    assert_eq!(
        std::fs::read(&path).expect("the file"),
        before,
        "left alone"
    );
}

//! 64 tasks contending for a pool of 4 connections (and a pool of 4 publishers on them): never
//! more than 4 connections lent or open, acquire timeouts typed, and nothing left open once the
//! pool is closed and dropped. On memory://, both `carrot serve`s and RabbitMQ, where the
//! broker's own count of connections (`rabbitmqctl list_connections`, through
//! `CARROT_TEST_AMQP_CTL`) is checked too.

mod amqp_support;
mod serve_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use amqp_support::*;
use carrot::{ConnectionPool, Error, PublisherPool, QueueSpec};

const TASKS: usize = 64;
const LIMIT: usize = 4;

/// RabbitMQ's count of open connections.
async fn rabbitmq_connections(ctl: &str) -> usize {
    let output = tokio::process::Command::new("sh")
        .args(["-c", &format!("{ctl} list_connections -q pid")])
        .output()
        .await
        .expect("rabbitmqctl runs");
    assert!(
        output.status.success(),
        "rabbitmqctl list_connections failed"
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with('<'))
        .count()
}

/// What a contention leaves: the pools (still open), the most connections lent at once and
/// the acquires that timed out.
struct Contended {
    pool: ConnectionPool,
    publishers: PublisherPool,
    most: usize,
    exhausted: usize,
}

impl Contended {
    async fn close(self) {
        self.publishers.close().await.expect("publishers closed");
        self.pool.close().await.expect("pool closed");
    }
}

async fn contend(url: &str, queue: &str) -> Contended {
    let pool = ConnectionPool::new(url, LIMIT).expect("a pool");
    let publishers = PublisherPool::new(pool.clone(), LIMIT, {
        let queue = queue.to_string();
        move |b| b.routing_key(queue.clone()).confirm_publish(true)
    })
    .expect("a publisher pool");
    pool.acquire(Duration::from_secs(10))
        .await
        .expect("a connection")
        .declare_queue(&QueueSpec::new(queue))
        .await
        .expect("the queue");
    let held = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let exhausted = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..TASKS)
        .map(|n| {
            let (pool, publishers) = (pool.clone(), publishers.clone());
            let (held, most, exhausted) = (held.clone(), most.clone(), exhausted.clone());
            tokio::spawn(async move {
                // A quarter of the tasks are impatient: their acquires time out, typed.
                let wait = if n % 4 == 0 {
                    Duration::from_millis(1)
                } else {
                    Duration::from_secs(30)
                };
                match pool.acquire(wait).await {
                    Ok(conn) => {
                        let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        assert!(pool.in_use() <= LIMIT && pool.idle() <= LIMIT);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        conn.queue_info(&format!("{}", conn.url())).await.ok();
                        held.fetch_sub(1, Ordering::SeqCst);
                    }
                    Err(Error::PoolExhausted { limit, .. }) => {
                        assert_eq!(limit, LIMIT);
                        exhausted.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => panic!("acquire: {e}"),
                }
                let publisher = publishers
                    .acquire(Duration::from_secs(30))
                    .await
                    .expect("a publisher");
                publisher.send(&n).await.expect("sent");
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a task");
    }
    assert!(pool.in_use() == 0 && (1..=LIMIT).contains(&pool.idle()));
    assert_eq!(publishers.in_use(), 0);
    let info = pool
        .acquire(Duration::from_secs(5))
        .await
        .expect("a connection")
        .queue_info(queue)
        .await
        .expect("the queue");
    assert_eq!(info.message_count as usize, TASKS, "every task sent");
    Contended {
        pool,
        publishers,
        most: most.load(Ordering::SeqCst),
        exhausted: exhausted.load(Ordering::SeqCst),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_tasks_share_four_connections_on_the_embedded_brokers_and_serve() {
    let mut urls = vec!["memory://pool-contention".to_string()];
    urls.extend(serve_support::served_urls("pool-contention"));
    for url in urls {
        let queue = unique("pool", "contention");
        let contended = contend(&url, &queue).await;
        let (most, exhausted) = (contended.most, contended.exhausted);
        eprintln!("{url}: at most {most} connections lent at once, {exhausted} acquires timed out");
        assert!((1..=LIMIT).contains(&most));
        assert!(exhausted >= 1, "the impatient acquires time out");
        contended.close().await;
        delete_queues(&url, &[queue]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_tasks_share_four_connections_on_rabbitmq_and_none_is_left_open() {
    let Some(url) = setting("CARROT_TEST_AMQP_URL", "an amqp:// URL of RabbitMQ") else {
        return;
    };
    let Some(ctl) = setting(
        "CARROT_TEST_AMQP_CTL",
        "a command that runs rabbitmqctl against the test broker",
    ) else {
        return;
    };
    let before = rabbitmq_connections(&ctl).await;
    let queue = unique("pool", "contention");
    let contended = contend(&url, &queue).await;
    // The pool's connections, all given back, are still open: at most 4 more than before.
    let open = rabbitmq_connections(&ctl).await;
    let idle = contended.pool.idle();
    eprintln!(
        "RabbitMQ: {before} connections before, {open} with the pool ({idle} idle), {} lent at once, {} timeouts",
        contended.most, contended.exhausted
    );
    assert!(
        open <= before + LIMIT,
        "{open} open, more than {before} + {LIMIT}"
    );
    assert!(open > before, "the pool's connections are open");
    assert!(contended.exhausted >= 1);
    contended.close().await;
    // Closed and dropped: RabbitMQ's count is back where it was.
    let mut after = rabbitmq_connections(&ctl).await;
    for _ in 0..20 {
        if after <= before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        after = rabbitmq_connections(&ctl).await;
    }
    assert!(
        after <= before,
        "{after} connections after, {before} before"
    );
    delete_queues(&url, &[queue]).await;
}

//! Failover across a RabbitMQ cluster, the engine users scale out on: three nodes on this
//! machine, a quorum queue, the client given all three URLs. The node both connections use is
//! stopped mid-stream: they move to another node, nothing confirmed is lost, and the stream
//! completes there.
//!
//! Needs `CARROT_TEST_CLUSTER_URLS` (the nodes' URLs separated by `;`),
//! `CARROT_TEST_CLUSTER_STOP` and `CARROT_TEST_CLUSTER_START` (commands that stop and start
//! the node of an AMQP port); `.ci/run` starts the cluster and sets them.

mod amqp_support;

use std::time::Duration;

use amqp_support::stream::{self, Plan};
use amqp_support::*;
use carrot::url::BrokerUrl;
use carrot::{QueueSpec, QueueType};

fn port_of(url: &BrokerUrl) -> u16 {
    match url {
        BrokerUrl::Amqp(settings) => settings.port,
        other => panic!("a cluster URL is amqp://, not {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_node_in_use_fails_over_with_no_confirmed_message_lost() {
    let Some(urls) = setting("CARROT_TEST_CLUSTER_URLS", "the URLs of a RabbitMQ cluster") else {
        return;
    };
    let Some(stop) = setting(
        "CARROT_TEST_CLUSTER_STOP",
        "a command that stops a cluster node",
    ) else {
        return;
    };
    let Some(start) = setting(
        "CARROT_TEST_CLUSTER_START",
        "a command that starts a cluster node",
    ) else {
        return;
    };
    let queue = unique("cluster", "quorum");
    let publishing = connect_quick(&urls).await;
    let consuming = connect_quick(&urls).await;
    let node = port_of(consuming.current_url());
    assert_eq!(
        port_of(publishing.current_url()),
        node,
        "both connections start on the first node"
    );
    let plan = Plan {
        total: 100_000,
        window: 256,
        prefetch: 500,
        queue: QueueSpec::new(&queue).queue_type(QueueType::Quorum),
        limit: Duration::from_secs(300),
    };
    let total = plan.total;
    let (watched, stop_node) = (consuming.clone(), format!("{stop} {node}"));
    let stream = stream::run(
        publishing.clone(),
        consuming.clone(),
        plan,
        move |progress| async move {
            progress.consumed_at_least(total / 3).await;
            shell(&stop_node, Duration::from_secs(60)).await;
            drop(watched);
        },
    );
    let counts = tokio::time::timeout(Duration::from_secs(360), stream).await;
    // The node comes back whatever happened, so that the cluster is whole for the next run.
    let restarted = tokio::time::timeout(
        Duration::from_secs(120),
        shell(&format!("{start} {node}"), Duration::from_secs(120)),
    )
    .await;
    let counts = counts.expect("the stream finished in time");
    restarted.expect("the stopped node starts again");
    eprintln!(
        "{}",
        counts.line("cluster node in use stopped (quorum queue)")
    );
    let now = port_of(consuming.current_url());
    eprintln!("failed over from the node on port {node} to the one on port {now}");
    assert_ne!(now, node, "the consumer moved to another node");
    assert_ne!(
        port_of(publishing.current_url()),
        node,
        "the publisher moved to another node"
    );
    assert_eq!(counts.lost, 0, "{counts:?}");
    assert_eq!(counts.consumed, total);
    assert!(!counts.recoveries.is_empty(), "{counts:?}");
    let _ = consuming
        .delete_queue(&queue, carrot::DeleteQueueOptions::new())
        .await;
    let _ = publishing.close().await;
    let _ = consuming.close().await;
}

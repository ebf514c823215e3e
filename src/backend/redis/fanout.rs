//! kombu's fanout messages into carrot's fanout queues.
//!
//! kombu publishes a fanout exchange's messages on Pub/Sub only: its fanout queues are
//! subscriptions, not lists. carrot's are lists, as an AMQP queue keeps its messages; so that
//! they get kombu's fanout messages too, each carrot connection with consumers subscribes to
//! every fanout channel (`PSUBSCRIBE`) and bridges what it receives into the lists of the
//! queues carrot declared and bound to the exchange, once whichever connections received it
//! ([`scripts::BRIDGE`]; carrot's own fanout publishes are marked as they push, and skipped).
//!
//! Like kombu's own fanout queues, carrot's receive what kombu publishes while a subscriber
//! runs: Pub/Sub keeps nothing, so a fanout message kombu publishes while no carrot
//! connection with consumers is subscribed (none runs, or Redis is being reconnected) reaches
//! no carrot queue.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_lite::StreamExt;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{envelope, scripts, Shared};

/// Starts the connection's bridge once, and waits (bounded) until it is subscribed, so that
/// what kombu publishes after a consumer started reaches its queue.
pub(crate) async fn ensure(shared: &Arc<Shared>) {
    shared
        .fanout
        .get_or_init(|| async {
            let (ready, subscribed) = oneshot::channel();
            tokio::spawn(run(
                Arc::downgrade(shared),
                shared.stop.clone(),
                Some(ready),
            ));
            let limit = shared.link.operation_timeout();
            let _ = tokio::time::timeout(limit, subscribed).await;
        })
        .await;
}

async fn run(
    shared: Weak<Shared>,
    stop: CancellationToken,
    mut ready: Option<oneshot::Sender<()>>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let Some((link, pattern)) = shared
            .upgrade()
            .map(|s| (s.link.clone(), s.keys.fanout_pattern()))
        else {
            return;
        };
        let subscribe = async {
            let mut sub = link.subscriber().await?;
            sub.psubscribe(&pattern)
                .await
                .map_err(|e| link.command_error("fanout PSUBSCRIBE", e))?;
            Ok::<_, crate::error::Error>(sub)
        };
        let subscribed = tokio::select! {
            s = subscribe => s,
            () = stop.cancelled() => return,
        };
        if let Some(ready) = ready.take() {
            let _ = ready.send(());
        }
        let sub = match subscribed {
            Ok(sub) => sub,
            Err(e) => {
                tracing::debug!(error = %e, "kombu's fanout messages cannot be subscribed to now; trying again");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        backoff = Duration::from_secs(1);
        let mut messages = sub.into_on_message();
        loop {
            let message = tokio::select! {
                m = messages.next() => m,
                () = stop.cancelled() => return,
            };
            // None: the subscription was lost; subscribe again.
            let Some(message) = message else { break };
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let Ok(payload) = message.get_payload::<String>() else {
                continue;
            };
            bridge(&shared, message.get_channel_name(), payload).await;
        }
    }
}

/// Pushes one fanout message on the lists of the queues carrot bound to its exchange, unless
/// a carrot connection did already.
async fn bridge(shared: &Shared, channel: &str, payload: String) {
    let keys = &shared.keys;
    let Some(exchange) = keys.fanout_exchange(channel) else {
        return;
    };
    let incoming = envelope::decode(&payload, "");
    if incoming.tag.is_empty() {
        // Not kombu's envelope: nothing a kombu fanout consumer would read either.
        return;
    }
    let priority = incoming.message.properties.priority().unwrap_or(0);
    let args = [
        exchange.to_string(),
        payload,
        keys.prefix().to_string(),
        keys.sep().to_string(),
        keys.fanout_mark(&incoming.tag),
        keys.suffix(priority),
    ];
    if let Err(e) = shared
        .link
        .script::<i64>(
            "fanout",
            &scripts::BRIDGE,
            &[keys.exchanges.clone(), keys.queues.clone()],
            &args,
        )
        .await
    {
        tracing::warn!(error = %e, exchange, "a fanout message kombu published could not be pushed on carrot's queues");
    }
}

//! Consumers on RabbitMQ that survive what happens under them.
//!
//! Each consumer has a task that moves lapin's deliveries into carrot's delivery stream. When
//! lapin's consumer ends, the task tells why:
//! - the application cancelled it, or closed or dropped its channel: the stream ends;
//! - the broker cancelled it (`basic.cancel`: its queue was deleted, its node failed with
//!   `x-cancel-on-ha-failover`): the stream ends with [`Error::ConsumerCancelled`];
//! - its channel was closed by an error, or the connection was lost: it subscribes again, on
//!   the reopened channel or the recovered connection, with the same tag; if that fails (the
//!   recovery gave up, the queue is gone), the stream ends with that error.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures_core::Stream;
use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable as LapinTable;
use tokio::sync::mpsc;

use super::super::convert;
use super::{closed_by_application, AmqpChannel};
use crate::backend::DeliveryStream;
use crate::error::{Error, Result};
use crate::retry::Attempts;

/// One consumer of a channel.
#[derive(Debug)]
pub(in crate::backend::amqp) struct Subscription {
    /// The queue's name now (a server-named queue is renamed by a recovery).
    queue: Mutex<String>,
    tag: Arc<str>,
    no_ack: bool,
    exclusive: bool,
    /// Its consumer priority (`x-priority`), kept for resuming.
    priority: i32,
    /// Ended by the application (cancel, close, drop).
    ended: AtomicBool,
}

impl Subscription {
    /// Marks it ended by the application; true the first time.
    pub(in crate::backend::amqp) fn end(&self) -> bool {
        !self.ended.swap(true, Ordering::AcqRel)
    }

    fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    pub(in crate::backend::amqp) fn queue(&self) -> String {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl AmqpChannel {
    /// Starts consuming; the deliveries come on the stream until the application ends the
    /// consumer, or with an error at the end when something else did.
    pub(in crate::backend::amqp) async fn subscribe(
        &self,
        queue: &str,
        consumer_tag: &str,
        no_ack: bool,
        exclusive: bool,
        priority: i32,
    ) -> Result<(Arc<str>, DeliveryStream)> {
        let (consumer, generation, queue) = self
            .basic_consume(queue, consumer_tag, no_ack, exclusive, priority)
            .await?;
        let tag: Arc<str> = consumer.tag().as_str().into();
        let subscription = Arc::new(Subscription {
            queue: Mutex::new(queue.clone()),
            tag: tag.clone(),
            no_ack,
            exclusive,
            priority,
            ended: AtomicBool::new(false),
        });
        self.subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tag.clone(), subscription.clone());
        self.link.topology().consumer_started(&queue);
        let me = self.me.upgrade().ok_or_else(closed_by_application)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let resumes = self
            .link
            .options()
            .policy
            .start_quiet(format!("resuming consumer {tag:?} of queue {queue:?}"));
        self.link
            .runtime()
            .spawn(forward(me, subscription, consumer, generation, tx, resumes));
        Ok((tag, DeliveryStream::unbounded(rx)))
    }

    /// basic.consume on the current channel (waiting for a recovery if one runs); the
    /// consumer, its channel's generation and the queue's name now.
    async fn basic_consume(
        &self,
        queue: &str,
        tag: &str,
        no_ack: bool,
        exclusive: bool,
        priority: i32,
    ) -> Result<(lapin::Consumer, u64, String)> {
        convert::short(queue, "the queue name")?;
        let tag = convert::short(tag, "the consumer tag")?;
        let options = BasicConsumeOptions {
            no_ack,
            exclusive,
            ..Default::default()
        };
        let mut arguments = LapinTable::default();
        if priority != 0 {
            arguments.insert(
                "x-priority".into(),
                lapin::types::AMQPValue::LongInt(priority),
            );
        }
        let ((consumer, queue), generation) = self
            .run_counted("basic.consume", |ch| {
                // Resolved once the channel is there: the recovery may have renamed the queue.
                let (queue, tag, arguments) =
                    (self.link.resolve(queue), tag.clone(), arguments.clone());
                async move {
                    ch.basic_consume(queue.as_str().into(), tag, options, arguments)
                        .await
                        .map(|consumer| (consumer, queue))
                }
            })
            .await?;
        Ok((consumer, generation, queue))
    }

    /// Forgets a consumer that ended without the application (it is no longer resumed).
    fn forget(&self, subscription: &Arc<Subscription>) {
        let mut subscriptions = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
        if subscriptions
            .get(&subscription.tag)
            .is_some_and(|s| Arc::ptr_eq(s, subscription))
        {
            subscriptions.remove(&subscription.tag);
            drop(subscriptions);
            if subscription.end() {
                self.link.topology().consumer_ended(&subscription.queue());
            }
        }
    }
}

/// Moves deliveries from lapin's consumer to carrot's stream, resuming the consumer when its
/// channel or connection is replaced.
async fn forward(
    channel: Arc<AmqpChannel>,
    subscription: Arc<Subscription>,
    consumer: lapin::Consumer,
    generation: u64,
    tx: mpsc::UnboundedSender<Result<crate::backend::Delivery>>,
    resumes: Attempts,
) {
    let (mut consumer, mut generation, mut resumes) = (consumer, generation, resumes);
    let mut flow = channel.flow.subscribe();
    let mut last_error: Option<lapin::Error> = None;
    let mut delivered = false;
    loop {
        // flow(false): stop taking deliveries; RabbitMQ keeps what it has not sent and lapin
        // keeps what it received, in order, until flow(true).
        if flow.wait_for(|active| *active).await.is_err() {
            return;
        }
        // No need to watch for the receiver going away: the application ends a consumer by
        // cancelling it or closing its channel, which ends lapin's stream too.
        let next = poll_fn(|cx| std::pin::Pin::new(&mut consumer).poll_next(cx)).await;
        match next {
            Some(Ok(delivery)) => {
                // A delivery that arrived after flow(false) (this task was already waiting for
                // one when the application paused) waits for flow(true) too.
                if flow.wait_for(|active| *active).await.is_err() {
                    return;
                }
                delivered = true;
                let tag = Some(subscription.tag.clone());
                if tx
                    .send(Ok(convert::delivery(delivery, generation, tag)))
                    .is_err()
                {
                    return;
                }
            }
            Some(Err(error)) => last_error = Some(error),
            None => {
                if subscription.is_ended() || channel.is_closed() {
                    return;
                }
                let Some(error) = last_error.take() else {
                    channel.forget(&subscription);
                    let _ = tx.send(Err(Error::ConsumerCancelled {
                        consumer_tag: subscription.tag.to_string(),
                        queue: subscription.queue(),
                        reason: "the broker cancelled it: its queue was deleted, or the queue's node failed".into(),
                    }));
                    return;
                };
                if delivered {
                    // It worked since the last resume: start counting afresh.
                    resumes = channel.link.options().policy.start_quiet(format!(
                        "resuming consumer {:?} of queue {:?}",
                        subscription.tag,
                        subscription.queue()
                    ));
                    delivered = false;
                }
                match resume(&channel, &subscription, &mut resumes, error).await {
                    Ok((resumed, new_generation)) => {
                        consumer = resumed;
                        generation = new_generation;
                    }
                    Err(error) => {
                        let by_application = subscription.is_ended() || channel.is_closed();
                        channel.forget(&subscription);
                        if !by_application {
                            let _ = tx.send(Err(error));
                        }
                        return;
                    }
                }
            }
        }
    }
}

/// Subscribes again after the consumer's channel or connection went away; the first time at
/// once, then (when it keeps failing without a delivery in between) with the policy's pauses.
async fn resume(
    channel: &AmqpChannel,
    subscription: &Subscription,
    resumes: &mut Attempts,
    cause: lapin::Error,
) -> Result<(lapin::Consumer, u64)> {
    tracing::info!(consumer_tag = %subscription.tag, cause = %cause, "resuming a consumer");
    if resumes.count() > 0 {
        let pause = resumes.failed(convert::error(cause), true)?;
        tokio::time::sleep(pause).await;
    } else {
        resumes.failed(convert::error(cause), false)?;
    }
    if subscription.is_ended() || channel.is_closed() {
        return Err(closed_by_application());
    }
    let (consumer, generation, queue) = channel
        .basic_consume(
            &subscription.queue(),
            &subscription.tag,
            subscription.no_ack,
            subscription.exclusive,
            subscription.priority,
        )
        .await?;
    *subscription.queue.lock().unwrap_or_else(|p| p.into_inner()) = queue;
    Ok((consumer, generation))
}

//! An AMQP channel on RabbitMQ, behind carrot's channel interface.
//!
//! RabbitMQ closes a channel on any channel-level error (a missing exchange, a redeclare with
//! other settings, ...). carrot's publishers and consumers outlive such errors: the next
//! operation opens a new channel transparently, with the same qos and confirm mode. Deliveries
//! of the closed channel were requeued by the broker; their tags carry the old channel's
//! generation, so acking them is a clear error instead of acking something else.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use futures_core::Stream;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
    QueuePurgeOptions,
};
use lapin::types::FieldTable as LapinTable;
use lapin::ExchangeKind;
use tokio::sync::{mpsc, watch};

use super::convert::{self, GENERATION_SHIFT};
use crate::backend::{Channel, Delivery, DeliveryStream, PublishFlags, Published, QueueInfo};
use crate::entity::{ExchangeSpec, ExchangeType, QueueSpec};
use crate::error::{Error, Result};
use crate::table::FieldTable;

/// The current lapin channel and what must be restored when it is reopened.
struct Current {
    /// Behind an `Arc`: every publish and ack takes a handle, and cloning a `lapin::Channel`
    /// itself costs a dozen reference counts.
    channel: Arc<lapin::Channel>,
    generation: u64,
    confirms: bool,
    /// basic.qos settings, reapplied on a new channel: (per consumer, per channel).
    prefetch: (Option<u16>, Option<u16>),
}

pub(super) struct AmqpChannel {
    connection: Arc<lapin::Connection>,
    current: Mutex<Current>,
    /// Serializes reopening, so that two operations do not open two channels.
    reopening: tokio::sync::Mutex<()>,
    flow: watch::Sender<bool>,
    runtime: tokio::runtime::Handle,
    /// Closed by the application (not by the broker): never reopened.
    closed: AtomicBool,
}

impl std::fmt::Debug for AmqpChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let current = self.lock();
        f.debug_struct("AmqpChannel")
            .field("id", &current.channel.id())
            .field("generation", &current.generation)
            .finish()
    }
}

/// Polls a lapin future once and drops it. lapin queues the frame of `basic.ack` and
/// `basic.nack` on that first poll, in call order, and the rest of the future only waits for
/// the write: acks are pipelined (FACTS.md: awaiting each one costs two thirds of the consume
/// rate) and stay ordered with every later method on the channel.
fn queue_frame<F: std::future::Future<Output = lapin::Result<()>>>(future: F) -> Result<()> {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    {
        std::task::Poll::Ready(Err(e)) => Err(convert::error(e)),
        _ => Ok(()),
    }
}

impl AmqpChannel {
    pub(super) async fn open(
        connection: Arc<lapin::Connection>,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self> {
        let channel = connection.create_channel().await.map_err(convert::error)?;
        Ok(AmqpChannel {
            connection,
            current: Mutex::new(Current {
                channel: Arc::new(channel),
                generation: 0,
                confirms: false,
                prefetch: (None, None),
            }),
            reopening: tokio::sync::Mutex::new(()),
            flow: watch::Sender::new(true),
            runtime,
            closed: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The channel to use now: the current one, or a new one if the broker closed it.
    async fn channel(&self) -> Result<(Arc<lapin::Channel>, u64)> {
        if self.closed.load(Ordering::Acquire) {
            return Err(closed_by_application());
        }
        {
            let current = self.lock();
            if current.channel.status().connected() {
                return Ok((current.channel.clone(), current.generation));
            }
        }
        let _guard = self.reopening.lock().await;
        let (confirms, prefetch) = {
            let current = self.lock();
            if current.channel.status().connected() {
                return Ok((current.channel.clone(), current.generation));
            }
            (current.confirms, current.prefetch)
        };
        if !self.connection.status().connected() {
            return Err(Error::ConnectionClosed(
                "the connection to RabbitMQ is closed; open a new BrokerConnection".into(),
            ));
        }
        tracing::debug!("reopening an AMQP channel the broker closed");
        let channel = self
            .connection
            .create_channel()
            .await
            .map_err(convert::error)?;
        if confirms {
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(convert::error)?;
        }
        if let Some(count) = prefetch.0 {
            channel
                .basic_qos(count, BasicQosOptions { global: false })
                .await
                .map_err(convert::error)?;
        }
        if let Some(count) = prefetch.1 {
            channel
                .basic_qos(count, BasicQosOptions { global: true })
                .await
                .map_err(convert::error)?;
        }
        let mut current = self.lock();
        current.channel = Arc::new(channel);
        current.generation += 1;
        Ok((current.channel.clone(), current.generation))
    }

    /// Puts the channel in confirm mode once (publisher confirms).
    async fn ensure_confirms(&self, channel: &lapin::Channel) -> Result<()> {
        if self.lock().confirms {
            return Ok(());
        }
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(convert::error)?;
        self.lock().confirms = true;
        Ok(())
    }

    /// The channel a delivery tag belongs to, and the tag lapin knows; refused when the
    /// delivery came from a channel that is gone.
    fn settling(&self, tag: u64) -> Result<(Arc<lapin::Channel>, u64)> {
        if self.closed.load(Ordering::Acquire) {
            return Err(closed_by_application());
        }
        let current = self.lock();
        if tag >> GENERATION_SHIFT != current.generation {
            return Err(Error::ChannelClosed(
                "the channel this message came from was closed by the broker, which requeued the message; it will be delivered again".into(),
            ));
        }
        if !current.channel.status().connected() {
            return Err(Error::ChannelClosed(
                "the channel was closed; the broker requeued its unacknowledged messages".into(),
            ));
        }
        Ok((current.channel.clone(), tag & ((1 << GENERATION_SHIFT) - 1)))
    }
}

fn closed_by_application() -> Error {
    Error::ChannelClosed("the publisher or consumer was closed; build a new one".into())
}

fn kind(kind: ExchangeType) -> ExchangeKind {
    match kind {
        ExchangeType::Direct => ExchangeKind::Direct,
        ExchangeType::Fanout => ExchangeKind::Fanout,
        ExchangeType::Topic => ExchangeKind::Topic,
        ExchangeType::Headers => ExchangeKind::Headers,
    }
}

#[async_trait]
impl Channel for AmqpChannel {
    async fn declare_exchange(&self, spec: &ExchangeSpec, passive: bool) -> Result<()> {
        let (channel, _) = self.channel().await?;
        if spec.name.is_empty() && passive {
            return Ok(());
        }
        let options = ExchangeDeclareOptions {
            passive,
            durable: spec.durable,
            auto_delete: spec.auto_delete,
            ..Default::default()
        };
        channel
            .exchange_declare(
                convert::short(&spec.name, "the exchange name")?,
                kind(spec.kind),
                options,
                convert::to_lapin_table(&spec.arguments)?,
            )
            .await
            .map_err(convert::error)
    }

    async fn delete_exchange(&self, name: &str, if_unused: bool) -> Result<()> {
        let (channel, _) = self.channel().await?;
        // RabbitMQ deletes a missing exchange silently; carrot reports it, as the memory broker does.
        self.declare_exchange(&ExchangeSpec::new(name, ExchangeType::Direct), true)
            .await?;
        let options = ExchangeDeleteOptions {
            if_unused,
            ..Default::default()
        };
        channel
            .exchange_delete(convert::short(name, "the exchange name")?, options)
            .await
            .map_err(convert::error)
    }

    async fn declare_queue(&self, spec: &QueueSpec, passive: bool) -> Result<QueueInfo> {
        let (channel, _) = self.channel().await?;
        let options = QueueDeclareOptions {
            passive,
            durable: spec.durable,
            exclusive: spec.exclusive,
            auto_delete: spec.auto_delete,
            ..Default::default()
        };
        let queue = channel
            .queue_declare(
                convert::short(&spec.name, "the queue name")?,
                options,
                convert::to_lapin_table(&spec.arguments)?,
            )
            .await
            .map_err(convert::error)?;
        Ok(QueueInfo {
            name: queue.name().as_str().to_string(),
            message_count: queue.message_count(),
            consumer_count: queue.consumer_count(),
        })
    }

    async fn delete_queue(&self, name: &str, if_unused: bool, if_empty: bool) -> Result<u32> {
        let (channel, _) = self.channel().await?;
        self.declare_queue(&QueueSpec::new(name), true).await?;
        let options = QueueDeleteOptions {
            if_unused,
            if_empty,
            ..Default::default()
        };
        channel
            .queue_delete(convert::short(name, "the queue name")?, options)
            .await
            .map_err(convert::error)
    }

    async fn bind(
        &self,
        queue: &str,
        exchange: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        let (channel, _) = self.channel().await?;
        channel
            .queue_bind(
                convert::short(queue, "the queue name")?,
                convert::short(exchange, "the exchange name")?,
                convert::short(key, "the routing key")?,
                QueueBindOptions::default(),
                convert::to_lapin_table(arguments)?,
            )
            .await
            .map_err(convert::error)
    }

    async fn unbind(
        &self,
        queue: &str,
        exchange: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        let (channel, _) = self.channel().await?;
        channel
            .queue_unbind(
                convert::short(queue, "the queue name")?,
                convert::short(exchange, "the exchange name")?,
                convert::short(key, "the routing key")?,
                convert::to_lapin_table(arguments)?,
            )
            .await
            .map_err(convert::error)
    }

    async fn publish(&self, message: Published, flags: PublishFlags) -> Result<()> {
        if flags.immediate {
            return Err(Error::Unsupported(
                "immediate: RabbitMQ 3.0 and later do not implement it; use a per-message TTL of 0 (expiration \"0\") with a dead-letter exchange instead".into(),
            ));
        }
        let (channel, _) = self.channel().await?;
        // A mandatory message must come back as an error, never silently: wait for its confirm,
        // which arrives after the broker's basic.return.
        let confirm = flags.confirm || flags.mandatory;
        if confirm {
            self.ensure_confirms(&channel).await?;
        }
        let options = BasicPublishOptions {
            mandatory: flags.mandatory,
            immediate: false,
        };
        let pending = channel
            .basic_publish(
                convert::short(&message.exchange, "the exchange name")?,
                convert::short(&message.routing_key, "the routing key")?,
                options,
                &message.body,
                convert::to_lapin_properties(&message.properties)?,
            )
            .await
            .map_err(convert::error)?;
        if !confirm {
            return Ok(());
        }
        let confirmation = pending.await.map_err(convert::error)?;
        if confirmation.is_nack() {
            return Err(Error::ChannelClosed(format!(
                "RabbitMQ refused responsibility for the message (basic.nack) on exchange {:?}; send it again",
                &*message.exchange
            )));
        }
        match confirmation.take_message() {
            Some(returned) => Err(Error::Unroutable {
                reply_code: returned.reply_code,
                reply_text: returned.reply_text.as_str().to_string(),
                exchange: message.exchange.to_string(),
                routing_key: message.routing_key.to_string(),
            }),
            None => Ok(()),
        }
    }

    async fn get(&self, queue: &str, no_ack: bool) -> Result<Option<Delivery>> {
        let (channel, generation) = self.channel().await?;
        let got = channel
            .basic_get(
                convert::short(queue, "the queue name")?,
                BasicGetOptions { no_ack },
            )
            .await
            .map_err(convert::error)?;
        Ok(got.map(|m| convert::delivery(m.delivery, generation, None)))
    }

    async fn consume(
        &self,
        queue: &str,
        consumer_tag: &str,
        no_ack: bool,
        exclusive: bool,
    ) -> Result<(Arc<str>, DeliveryStream)> {
        let (channel, generation) = self.channel().await?;
        let options = BasicConsumeOptions {
            no_ack,
            exclusive,
            ..Default::default()
        };
        let mut consumer = channel
            .basic_consume(
                convert::short(queue, "the queue name")?,
                convert::short(consumer_tag, "the consumer tag")?,
                options,
                LapinTable::default(),
            )
            .await
            .map_err(convert::error)?;
        let tag: Arc<str> = consumer.tag().as_str().into();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut flow = self.flow.subscribe();
        let delivery_tag = tag.clone();
        self.runtime.spawn(async move {
            loop {
                // flow(false): stop taking deliveries; RabbitMQ keeps what it has not sent and
                // lapin keeps what it received, in order, until flow(true).
                if flow.wait_for(|active| *active).await.is_err() {
                    break;
                }
                let next = poll_fn(|cx| Pin::new(&mut consumer).poll_next(cx)).await;
                let delivery = match next {
                    Some(Ok(delivery)) => delivery,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "consumer ended");
                        break;
                    }
                    None => break,
                };
                if tx
                    .send(convert::delivery(
                        delivery,
                        generation,
                        Some(delivery_tag.clone()),
                    ))
                    .is_err()
                {
                    break;
                }
            }
        });
        Ok((tag, rx))
    }

    async fn cancel(&self, consumer_tag: &str) -> Result<()> {
        let (channel, _) = self.channel().await?;
        channel
            .basic_cancel(
                convert::short(consumer_tag, "the consumer tag")?,
                BasicCancelOptions::default(),
            )
            .await
            .map_err(convert::error)
    }

    fn ack(&self, delivery_tag: u64, multiple: bool) -> Result<()> {
        let (channel, tag) = self.settling(delivery_tag)?;
        queue_frame(channel.basic_ack(tag, BasicAckOptions { multiple }))
    }

    fn reject(&self, delivery_tag: u64, requeue: bool) -> Result<()> {
        let (channel, tag) = self.settling(delivery_tag)?;
        queue_frame(channel.basic_nack(
            tag,
            BasicNackOptions {
                multiple: false,
                requeue,
            },
        ))
    }

    async fn qos(&self, prefetch_size: u32, prefetch_count: u16, global: bool) -> Result<()> {
        if prefetch_size != 0 {
            return Err(Error::Unsupported(
                "prefetch_size: RabbitMQ does not implement it (540 NOT_IMPLEMENTED); bound deliveries with prefetch_count".into(),
            ));
        }
        let (channel, _) = self.channel().await?;
        channel
            .basic_qos(prefetch_count, BasicQosOptions { global })
            .await
            .map_err(convert::error)?;
        let mut current = self.lock();
        if global {
            current.prefetch.1 = Some(prefetch_count);
        } else {
            current.prefetch.0 = Some(prefetch_count);
        }
        Ok(())
    }

    async fn flow(&self, active: bool) -> Result<()> {
        // RabbitMQ refuses channel.flow from clients: pause on this side instead.
        self.flow.send_replace(active);
        Ok(())
    }

    async fn purge(&self, queue: &str) -> Result<u32> {
        let (channel, _) = self.channel().await?;
        channel
            .queue_purge(
                convert::short(queue, "the queue name")?,
                QueuePurgeOptions::default(),
            )
            .await
            .map_err(convert::error)
    }

    async fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let channel = self.lock().channel.clone();
        if channel.status().connected() {
            channel
                .close(200, "OK".into())
                .await
                .map_err(convert::error)?;
        }
        Ok(())
    }

    fn shutdown(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let channel = self.lock().channel.clone();
        if !channel.status().connected() {
            return;
        }
        // The first poll queues channel.close on the connection now, in order with whatever
        // the application sends next (a queue_info right after dropping a consumer must see
        // the consumer gone); a task waits for close-ok.
        let mut closing = Box::pin(async move {
            if let Err(e) = channel.close(200, "OK".into()).await {
                tracing::debug!(error = %e, "closing a dropped channel");
            }
        });
        let first = std::future::Future::poll(
            closing.as_mut(),
            &mut std::task::Context::from_waker(std::task::Waker::noop()),
        );
        if first.is_pending() {
            self.runtime.spawn(closing);
        }
    }
}

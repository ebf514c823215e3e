//! The AMQP methods behind carrot's channel interface: each operation of [`Channel`] on the
//! current lapin channel (reopened as needed, see the parent module), with RabbitMQ's
//! differences from the embedded brokers made up for (a missing exchange or queue reported on
//! delete, `flow` done on this side).

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicGetOptions, BasicNackOptions, BasicQosOptions,
    ExchangeBindOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, ExchangeUnbindOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};

use super::super::convert::{self, GENERATION_SHIFT};
use super::{kind, stale_delivery, AmqpChannel};
use crate::backend::{
    Channel, Confirmation, Delivery, DeliveryStream, PublishFlags, Published, QueueInfo,
};
use crate::entity::{ExchangeSpec, QueueSpec};
use crate::error::{Cause, Error, Result};
use crate::table::FieldTable;

/// Polls a lapin future once and drops it. lapin queues the frame of `basic.ack` and
/// `basic.nack` on that first poll, in call order, and the rest of the future only waits for
/// the write: acks are pipelined (awaiting each one costs lapin two thirds of its consume
/// rate) and stay ordered with every later method on the channel.
fn queue_frame<F: Future<Output = lapin::Result<()>>>(future: F) -> Result<()> {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    {
        // lapin refuses at once only when the channel or its connection is no longer open:
        // the delivery was lost with it, whatever lapin calls the state.
        std::task::Poll::Ready(Err(e)) => Err(stale_delivery(Some(Cause::new(e)))),
        _ => Ok(()),
    }
}

#[async_trait]
impl Channel for AmqpChannel {
    async fn declare_exchange(&self, spec: &ExchangeSpec, passive: bool) -> Result<()> {
        if spec.name.is_empty() && passive {
            self.channel().await?;
            return Ok(());
        }
        let options = ExchangeDeclareOptions {
            passive,
            durable: spec.durable,
            auto_delete: spec.auto_delete,
            internal: spec.internal,
            ..Default::default()
        };
        let arguments = convert::to_lapin_table(&spec.arguments)?;
        let name = convert::short(&spec.name, "the exchange name")?;
        self.run("exchange.declare", |ch| {
            let (name, arguments) = (name.clone(), arguments.clone());
            async move {
                ch.exchange_declare(name, kind(spec.kind), options, arguments)
                    .await
            }
        })
        .await?;
        if !passive {
            self.link.topology().exchange_declared(spec);
        }
        Ok(())
    }

    async fn delete_exchange(&self, name: &str, if_unused: bool) -> Result<()> {
        let options = ExchangeDeleteOptions {
            if_unused,
            ..Default::default()
        };
        let short = convert::short(name, "the exchange name")?;
        self.run("exchange.delete", |ch| {
            let name = short.clone();
            async move { ch.exchange_delete(name, options).await }
        })
        .await?;
        self.link.topology().exchange_deleted(name);
        Ok(())
    }

    async fn declare_queue(&self, spec: &QueueSpec, passive: bool) -> Result<QueueInfo> {
        let options = QueueDeclareOptions {
            passive,
            durable: spec.durable,
            exclusive: spec.exclusive,
            auto_delete: spec.auto_delete,
            ..Default::default()
        };
        let arguments = convert::to_lapin_table(&spec.arguments)?;
        convert::short(&spec.name, "the queue name")?;
        let queue = self
            .run("queue.declare", |ch| {
                // Resolved once the channel is there: a recovery may have renamed the queue.
                let (name, arguments) = (self.link.resolve(&spec.name), arguments.clone());
                async move { ch.queue_declare(name.into(), options, arguments).await }
            })
            .await?;
        let info = QueueInfo {
            name: queue.name().as_str().to_string(),
            message_count: queue.message_count(),
            consumer_count: queue.consumer_count(),
        };
        if !passive {
            self.link.topology().queue_declared(spec, &info.name);
        }
        Ok(info)
    }

    async fn delete_queue(&self, name: &str, if_unused: bool, if_empty: bool) -> Result<u32> {
        convert::short(name, "the queue name")?;
        let options = QueueDeleteOptions {
            if_unused,
            if_empty,
            ..Default::default()
        };
        let count = self
            .run("queue.delete", |ch| {
                let name = self.link.resolve(name);
                async move { ch.queue_delete(name.into(), options).await }
            })
            .await?;
        let name = self.link.resolve(name);
        self.link.topology().queue_deleted(&name);
        Ok(count)
    }

    async fn bind(
        &self,
        queue: &str,
        exchange: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        let table = convert::to_lapin_table(arguments)?;
        convert::short(queue, "the queue name")?;
        let (exchange_name, key_name) = (
            convert::short(exchange, "the exchange name")?,
            convert::short(key, "the binding key")?,
        );
        self.run("queue.bind", |ch| {
            let q = self.link.resolve(queue);
            let (e, k, t) = (exchange_name.clone(), key_name.clone(), table.clone());
            async move {
                ch.queue_bind(q.into(), e, k, QueueBindOptions::default(), t)
                    .await
            }
        })
        .await?;
        let queue = self.link.resolve(queue);
        self.link.topology().bound(&queue, exchange, key, arguments);
        Ok(())
    }

    async fn unbind(
        &self,
        queue: &str,
        exchange: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        let table = convert::to_lapin_table(arguments)?;
        convert::short(queue, "the queue name")?;
        let (exchange_name, key_name) = (
            convert::short(exchange, "the exchange name")?,
            convert::short(key, "the binding key")?,
        );
        self.run("queue.unbind", |ch| {
            let q = self.link.resolve(queue);
            let (e, k, t) = (exchange_name.clone(), key_name.clone(), table.clone());
            async move { ch.queue_unbind(q.into(), e, k, t).await }
        })
        .await?;
        let queue = self.link.resolve(queue);
        self.link
            .topology()
            .unbound(&queue, exchange, key, arguments);
        Ok(())
    }

    async fn bind_exchange(
        &self,
        destination: &str,
        source: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        let table = convert::to_lapin_table(arguments)?;
        let (d, s, k) = (
            convert::short(destination, "the destination exchange name")?,
            convert::short(source, "the source exchange name")?,
            convert::short(key, "the binding key")?,
        );
        self.run("exchange.bind", |ch| {
            let (d, s, k, t) = (d.clone(), s.clone(), k.clone(), table.clone());
            async move {
                ch.exchange_bind(d, s, k, ExchangeBindOptions::default(), t)
                    .await
            }
        })
        .await?;
        self.link
            .topology()
            .exchange_bound(destination, source, key, arguments);
        Ok(())
    }

    async fn unbind_exchange(
        &self,
        destination: &str,
        source: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        let table = convert::to_lapin_table(arguments)?;
        let (d, s, k) = (
            convert::short(destination, "the destination exchange name")?,
            convert::short(source, "the source exchange name")?,
            convert::short(key, "the binding key")?,
        );
        self.run("exchange.unbind", |ch| {
            let (d, s, k, t) = (d.clone(), s.clone(), k.clone(), table.clone());
            async move {
                ch.exchange_unbind(d, s, k, ExchangeUnbindOptions::default(), t)
                    .await
            }
        })
        .await?;
        self.link
            .topology()
            .exchange_unbound(destination, source, key, arguments);
        Ok(())
    }

    async fn publish(&self, message: Arc<Published>, flags: PublishFlags) -> Result<Confirmation> {
        self.publish_message(message, flags).await
    }

    async fn get(&self, queue: &str, no_ack: bool) -> Result<Option<Delivery>> {
        convert::short(queue, "the queue name")?;
        let (got, generation) = self
            .run_counted("basic.get", |ch| {
                let queue = self.link.resolve(queue);
                async move {
                    ch.basic_get(queue.as_str().into(), BasicGetOptions { no_ack })
                        .await
                }
            })
            .await?;
        Ok(got.map(|m| convert::delivery(m.delivery, generation, None)))
    }

    async fn consume(
        &self,
        queue: &str,
        consumer_tag: &str,
        no_ack: bool,
        exclusive: bool,
        priority: i32,
    ) -> Result<(Arc<str>, DeliveryStream)> {
        self.subscribe(queue, consumer_tag, no_ack, exclusive, priority)
            .await
    }

    async fn cancel(&self, consumer_tag: &str) -> Result<()> {
        let subscription = self
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(consumer_tag);
        if let Some(s) = &subscription {
            if s.end() {
                self.link.topology().consumer_ended(&s.queue());
            }
        }
        // Nothing to cancel on a connection being recovered: the consumer is simply not
        // resumed.
        let Some(handle) = self.usable() else {
            return Ok(());
        };
        let cancel = handle.channel.basic_cancel(
            convert::short(consumer_tag, "the consumer tag")?,
            BasicCancelOptions::default(),
        );
        self.attempt("basic.cancel", handle.epoch, cancel)
            .await
            .map(|_| ())
    }

    fn is_stale(&self, delivery_tag: u64) -> bool {
        delivery_tag >> GENERATION_SHIFT != self.lock().generation
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
        self.run("basic.qos", |ch| async move {
            ch.basic_qos(prefetch_count, BasicQosOptions { global })
                .await
        })
        .await?;
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
        convert::short(queue, "the queue name")?;
        self.run("queue.purge", |ch| {
            let queue = self.link.resolve(queue);
            async move {
                ch.queue_purge(queue.into(), QueuePurgeOptions::default())
                    .await
            }
        })
        .await
    }

    async fn tx_select(&self) -> Result<()> {
        self.select_transactions().await
    }

    async fn tx_commit(&self) -> Result<Vec<(Arc<Published>, Error)>> {
        // Returned messages of a transaction come as basic.return, which carrot's transactional
        // publishers do not ask for (they refuse mandatory).
        self.end_transaction(true).await.map(|()| Vec::new())
    }

    async fn tx_rollback(&self) -> Result<()> {
        self.end_transaction(false).await
    }

    async fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.end_subscriptions();
        let channel = self.lock().channel.take();
        let Some(channel) = channel.filter(|c| c.status().connected()) else {
            return Ok(());
        };
        let limit = self.link.options().timeouts.get_operation();
        match tokio::time::timeout(limit, channel.close(200, "OK".into())).await {
            Err(_) => Err(Error::Timeout {
                operation: "channel.close".into(),
                after: limit,
            }),
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if !channel.status().connected() => {
                tracing::debug!(error = %e, "ignored while closing a channel");
                Ok(())
            }
            Ok(Err(e)) => Err(convert::error(e)),
        }
    }

    fn shutdown(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.end_subscriptions();
        let channel = self.lock().channel.take();
        let Some(channel) = channel.filter(|c| c.status().connected()) else {
            return;
        };
        // The first poll queues channel.close on the connection now, in order with whatever
        // the application sends next (a queue_info right after dropping a consumer must see
        // the consumer gone); a task on the link's runtime waits for close-ok, at most the
        // operation timeout. The first poll makes no timer and spawns nothing, so that a drop
        // on a thread of no runtime (the blocking API), or after the runtime stopped, is fine.
        let mut closing = Box::pin(async move { channel.close(200, "OK".into()).await });
        let first = Future::poll(
            closing.as_mut(),
            &mut std::task::Context::from_waker(std::task::Waker::noop()),
        );
        if first.is_pending() {
            let limit = self.link.options().timeouts.get_operation();
            let close = async move {
                match tokio::time::timeout(limit, closing).await {
                    Ok(Err(e)) => tracing::debug!(error = %e, "closing a dropped channel"),
                    Err(_) => tracing::debug!("no close-ok for a dropped channel within {limit:?}"),
                    Ok(Ok(())) => {}
                }
            };
            self.link.runtime().spawn(self.link.closings().track(close));
        }
    }
}

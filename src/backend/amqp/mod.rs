//! RabbitMQ (`amqp://`, `amqps://`) through lapin.
//!
//! RabbitMQ routes for itself; this backend maps carrot's channel interface onto AMQP 0-9-1
//! methods, reply codes onto carrot's errors, and restores what RabbitMQ does not do for a
//! client:
//! - a lost connection is recovered ([`link`]): reconnect under the retry policy through the
//!   failover URLs, declare again what was declared ([`topology`]), reopen channels with their
//!   confirm mode and qos, resubscribe consumers (`channel/subscription.rs`);
//! - channels reopened after channel errors (404, 406, ...);
//! - every wait bounded by a timeout; sends wait (bounded) while the broker blocks publishing;
//! - publisher confirms that can be awaited later (pipelined), resent after a lost
//!   connection ([`publish`]);
//! - `flow(false)` (refused by RabbitMQ from clients) done on the client side, mandatory
//!   returns turned into errors.

mod channel;
mod connect;
pub(crate) mod convert;
mod link;
mod publish;
mod topology;

use std::sync::Arc;

use async_trait::async_trait;

use crate::backend::{Channel, Closings, Transport};
use crate::error::Result;
use crate::options::ConnectionOptions;
use crate::status::StatusHub;
use crate::url::BrokerUrl;

use channel::AmqpChannel;
use link::Link;

/// A connection to RabbitMQ (one of its failover URLs at a time).
pub(crate) struct AmqpConnection {
    link: Arc<Link>,
}

impl std::fmt::Debug for AmqpConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConnection")
            .field("link", &self.link)
            .finish()
    }
}

impl AmqpConnection {
    pub(crate) async fn open(
        urls: &[BrokerUrl],
        options: &ConnectionOptions,
        hub: Arc<StatusHub>,
    ) -> Result<Self> {
        let endpoints = connect::Endpoint::all(urls);
        let link = Link::open(endpoints, options.clone(), hub).await?;
        Ok(AmqpConnection { link })
    }
}

#[async_trait]
impl Transport for AmqpConnection {
    async fn channel(&self) -> Result<Arc<dyn Channel>> {
        let channel = AmqpChannel::open(self.link.clone()).await?;
        Ok(channel)
    }

    async fn close(&self) -> Result<()> {
        self.link.close().await
    }

    fn current_url(&self) -> usize {
        self.link.current_url()
    }

    fn closings(&self) -> Closings {
        self.link.closings().clone()
    }
}

impl Drop for AmqpConnection {
    fn drop(&mut self) {
        if let Some(connection) = self.link.shut() {
            if connection.status().connected() {
                let limit = self.link.options().timeouts.get_operation();
                let close = async move {
                    let _ = tokio::time::timeout(limit, connection.close(200, "OK".into())).await;
                };
                self.link.runtime().spawn(self.link.closings().track(close));
            }
        }
    }
}

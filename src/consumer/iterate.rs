//! Receiving many messages: [`Consumer::iterconsume`], [`Consumer::wait`] (consuming with
//! callbacks) and [`Consumer::iterqueue`] (fetching one by one).

use super::{Consumer, IterQueueOptions};
use crate::error::{Error, Result};
use crate::message::Message;

impl Consumer {
    /// Consumes messages as they arrive, passing each to the callbacks and yielding it
    /// afterwards; stops after `limit` messages, or when the consumer is cancelled.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use carrot::{BrokerConnection, Consumer, Publisher};
    /// let conn = BrokerConnection::connect("memory://iterconsume-doc").await?;
    /// let mut consumer = Consumer::builder(&conn).queue("jobs").build().await?;
    /// consumer.register_callback(|payload, message| {
    ///     assert!(payload.as_data().is_some());
    ///     message.ack()
    /// });
    /// let publisher = Publisher::builder(&conn).routing_key("jobs").build().await?;
    /// publisher.send(&1).await?;
    /// publisher.send(&2).await?;
    /// let mut messages = consumer.iterconsume(Some(2));
    /// while let Some(message) = messages.next().await {
    ///     assert!(message?.acknowledged()); // the callbacks have run on it
    /// }
    /// # Ok::<(), carrot::Error>(()) }).unwrap();
    /// ```
    pub fn iterconsume(&mut self, limit: Option<usize>) -> IterConsume<'_> {
        IterConsume {
            consumer: self,
            remaining: limit,
        }
    }

    /// Consumes with callbacks until `limit` messages were processed (forever without one);
    /// returns how many were.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use carrot::{BrokerConnection, Consumer, Publisher};
    /// let conn = BrokerConnection::connect("memory://wait-doc").await?;
    /// let mut consumer = Consumer::builder(&conn).queue("jobs").build().await?;
    /// consumer.register_callback(|_payload, message| message.ack());
    /// let publisher = Publisher::builder(&conn).routing_key("jobs").build().await?;
    /// for n in 0..3 {
    ///     publisher.send(&n).await?;
    /// }
    /// assert_eq!(consumer.wait(Some(3)).await?, 3);
    /// # Ok::<(), carrot::Error>(()) }).unwrap();
    /// ```
    pub async fn wait(&mut self, limit: Option<usize>) -> Result<usize> {
        let mut it = self.iterconsume(limit);
        let mut n = 0;
        while let Some(message) = it.next().await {
            message?;
            n += 1;
        }
        Ok(n)
    }

    /// Fetches waiting messages one by one (basic.get). Ends when the queue is empty, unless
    /// [`infinite`](IterQueueOptions::infinite), in which case it yields `Ok(None)` for an
    /// empty queue and goes on; stops after [`limit`](IterQueueOptions::limit) items.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use carrot::{BrokerConnection, Consumer, IterQueueOptions, Publisher};
    /// let conn = BrokerConnection::connect("memory://iterqueue-doc").await?;
    /// let mut consumer = Consumer::builder(&conn).queue("jobs").build().await?;
    /// let publisher = Publisher::builder(&conn).routing_key("jobs").build().await?;
    /// for n in 0..3 {
    ///     publisher.send(&n).await?;
    /// }
    /// let mut waiting = consumer.iterqueue(IterQueueOptions::new().limit(2));
    /// while let Some(item) = waiting.next().await {
    ///     let message = item?.expect("not infinite: an empty queue ends the iteration");
    ///     message.ack()?;
    /// }
    /// // One message is left; with `infinite`, an empty queue yields `Ok(None)`.
    /// let mut polling = consumer.iterqueue(IterQueueOptions::new().limit(2).infinite(true));
    /// assert!(polling.next().await.expect("an item")?.is_some());
    /// assert!(polling.next().await.expect("an item")?.is_none());
    /// # Ok::<(), carrot::Error>(()) }).unwrap();
    /// ```
    pub fn iterqueue(&mut self, options: IterQueueOptions) -> IterQueue<'_> {
        IterQueue {
            consumer: self,
            remaining: options.limit,
            infinite: options.infinite,
        }
    }
}

/// The iterator of [`Consumer::iterconsume`]: call `next().await`.
#[derive(Debug)]
pub struct IterConsume<'a> {
    consumer: &'a mut Consumer,
    remaining: Option<usize>,
}

impl IterConsume<'_> {
    /// The next message, after the callbacks ran on it; `None` at the limit or on cancel.
    pub async fn next(&mut self) -> Option<Result<Message>> {
        if self.remaining == Some(0) {
            return None;
        }
        if !self.consumer.has_callbacks() {
            self.remaining = Some(0);
            return Some(Err(Error::NoCallbacks));
        }
        let message = match self.consumer.next_message().await {
            Ok(Some(m)) => m,
            Ok(None) => return None,
            Err(e) => return Some(Err(e)),
        };
        if let Some(r) = &mut self.remaining {
            *r -= 1;
        }
        Some(self.consumer.receive(&message).map(|()| message))
    }
}

/// The iterator of [`Consumer::iterqueue`]: call `next().await`.
#[derive(Debug)]
pub struct IterQueue<'a> {
    consumer: &'a mut Consumer,
    remaining: Option<usize>,
    infinite: bool,
}

impl IterQueue<'_> {
    /// The next waiting message; `Some(Ok(None))` for an empty queue when infinite.
    pub async fn next(&mut self) -> Option<Result<Option<Message>>> {
        if self.remaining == Some(0) {
            return None;
        }
        let item = match self.consumer.fetch().await {
            Ok(None) if !self.infinite => return None,
            other => other,
        };
        if let Some(r) = &mut self.remaining {
            *r -= 1;
        }
        Some(item)
    }
}

//! Publishing on RabbitMQ: sends wait (bounded) while the broker blocks publishing, publisher
//! confirms can be awaited later (pipelined), and a message whose confirm was lost with the
//! connection is sent again once the connection is recovered (at least once: the broker may
//! have stored it before the loss).
//!
//! A mandatory message is sent alone: once every confirm in flight on the channel is in, and
//! nothing else is sent until its own confirm is. RabbitMQ acknowledges several messages at
//! once (`multiple`), and lapin hands a `basic.return` to whichever confirm of such an ack it
//! resolves first (in a hash map's order), so a returned message in a pipeline could be
//! reported on another message while its own send looked confirmed. Alone, its ack covers
//! it only. So on RabbitMQ, as on the embedded brokers, the send of an unroutable mandatory
//! message fails itself ([`Error::Unroutable`]); mandatory sends cost a round trip each.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::{Confirmation as LapinConfirmation, PublisherConfirm};

use super::channel::{closed_by_application, AmqpChannel};
use super::convert;
use crate::backend::{Confirmation, PublishFlags, Published};
use crate::error::{Error, Result};
use crate::retry::Attempts;

impl AmqpChannel {
    pub(super) async fn publish_message(
        &self,
        message: Arc<Published>,
        flags: PublishFlags,
    ) -> Result<Confirmation> {
        if flags.immediate {
            return Err(Error::Unsupported(
                "immediate: RabbitMQ 3.0 and later do not implement it; use a per-message TTL of 0 (expiration \"0\") with a dead-letter exchange instead".into(),
            ));
        }
        if flags.mandatory {
            return self.publish_mandatory(message, flags).await;
        }
        let mut attempts = None;
        let sent = {
            let _sending = self.fence.read().await;
            self.send_frames(&message, flags, flags.confirm, &mut attempts)
                .await?
        };
        let Some((pending, epoch)) = sent else {
            return Ok(Confirmation::Done);
        };
        let me = self.me.upgrade().ok_or_else(closed_by_application)?;
        Ok(Confirmation::Pending(Box::pin(
            me.confirmed(pending, epoch, message, flags, attempts),
        )))
    }

    /// A mandatory message, sent alone (see the module documentation): it must come back as
    /// an error, never silently, so its confirm (which comes after the broker's basic.return)
    /// is waited for here.
    async fn publish_mandatory(
        &self,
        message: Arc<Published>,
        flags: PublishFlags,
    ) -> Result<Confirmation> {
        let _alone = self.fence.write().await;
        self.confirms_in_flight_settled().await;
        let mut attempts = None;
        let sent = self
            .send_frames(&message, flags, true, &mut attempts)
            .await?;
        if let Some((pending, epoch)) = sent {
            let me = self.me.upgrade().ok_or_else(closed_by_application)?;
            me.confirmed(pending, epoch, message, flags, attempts)
                .await?;
        }
        Ok(Confirmation::Done)
    }

    /// Waits until the confirms of the messages sent so far on the current channel are in (at
    /// most the send timeout; a channel lost meanwhile has none left: their senders send
    /// again).
    async fn confirms_in_flight_settled(&self) {
        let Some(handle) = self.usable() else {
            return;
        };
        if !self.confirms_selected() {
            return;
        }
        let limit = self.link.options().timeouts.get_send();
        // What it returns belongs to mandatory messages whose confirms were dropped unread.
        let _ = tokio::time::timeout(limit, handle.channel.wait_for_confirms()).await;
    }

    /// Hands the message to the connection (waiting while the broker blocks publishing, and
    /// for a recovery); with `confirm`, its pending confirm and the connection's epoch.
    ///
    /// The rare paths (a blocked broker, a channel to reopen, confirm mode to select) are
    /// boxed: inline, their state would make every message's future several times larger
    /// (and its allocation slower) than the common path needs.
    async fn send_frames(
        &self,
        message: &Published,
        flags: PublishFlags,
        confirm: bool,
        attempts: &mut Option<Attempts>,
    ) -> Result<Option<(PublisherConfirm, u64)>> {
        let limit = self.link.options().timeouts.get_send();
        loop {
            if self.link.blocked_reason().is_some() {
                if let Err(reason) = Box::pin(self.link.unblocked(limit)).await {
                    return Err(Error::Blocked {
                        reason,
                        waited: limit,
                        sent: false,
                    });
                }
            }
            let handle = match self.usable() {
                Some(handle) => handle,
                None => Box::pin(self.channel()).await?,
            };
            if confirm && !self.confirms_selected() {
                match Box::pin(self.ensure_confirms(&handle)).await? {
                    Some(true) => {}
                    // The channel was replaced meanwhile: take the new one.
                    Some(false) => continue,
                    None => {
                        self.lost_again(attempts, "confirm.select")?;
                        continue;
                    }
                }
            }
            let options = BasicPublishOptions {
                mandatory: flags.mandatory,
                immediate: false,
            };
            let publish = handle.channel.basic_publish(
                convert::short(&message.exchange, "the exchange name")?,
                convert::short(&message.routing_key, "the routing key")?,
                options,
                &message.body,
                convert::to_lapin_properties(&message.properties)?,
            );
            match tokio::time::timeout(limit, publish).await {
                Err(_) => return Err(self.stalled("basic.publish", limit)),
                Ok(Ok(pending)) => return Ok(confirm.then_some((pending, handle.epoch))),
                Ok(Err(e)) if self.link.lost(&e, handle.epoch) => {
                    self.lost_again(attempts, "basic.publish")?;
                }
                Ok(Err(e)) => return Err(convert::error(e)),
            }
        }
    }

    /// Waits for a message's confirm; sends it again if the connection was lost first.
    async fn confirmed(
        self: Arc<Self>,
        pending: PublisherConfirm,
        epoch: u64,
        message: Arc<Published>,
        flags: PublishFlags,
        mut attempts: Option<Attempts>,
    ) -> Result<()> {
        let limit = self.link.options().timeouts.get_send();
        let (mut pending, mut epoch) = (pending, epoch);
        loop {
            match tokio::time::timeout(limit, pending).await {
                Err(_) => return Err(self.stalled("publisher confirm", limit)),
                Ok(Ok(confirmation)) => return outcome(confirmation, &message),
                Ok(Err(e)) if self.link.lost(&e, epoch) => {
                    self.lost_again(&mut attempts, "publisher confirm")?;
                    tracing::debug!(
                        "the connection was lost before the confirm: sending the message again"
                    );
                    // A mandatory message holds the fence already (it is sent alone).
                    let _sending = match flags.mandatory {
                        true => None,
                        false => Some(self.fence.read().await),
                    };
                    let again = Box::pin(self.send_frames(&message, flags, true, &mut attempts));
                    match again.await? {
                        Some((again, new_epoch)) => (pending, epoch) = (again, new_epoch),
                        None => return Ok(()),
                    }
                }
                Ok(Err(e)) => return Err(convert::error(e)),
            }
        }
    }

    /// A send that got no answer in time: blocked by the broker, or a timeout.
    fn stalled(&self, what: &str, limit: Duration) -> Error {
        match self.link.blocked_reason() {
            Some(reason) => Error::Blocked {
                reason,
                waited: limit,
                sent: true,
            },
            None => Error::Timeout {
                operation: format!(
                    "{what} (the message may or may not have reached the broker: send it again if it must not be lost, duplicates are possible)"
                ),
                after: limit,
            },
        }
    }
}

impl AmqpChannel {
    /// Counts a send attempt that met a lost connection (the count starts with the first
    /// one, so a send that never meets one allocates nothing); the policy's error when it
    /// gives up.
    fn lost_again(&self, attempts: &mut Option<Attempts>, what: &str) -> Result<()> {
        let attempts = attempts
            .get_or_insert_with(|| self.link.options().policy.start_quiet("sending a message"));
        attempts.failed(
            Error::connection_closed(format!("{what}: the connection was lost")),
            false,
        )?;
        Ok(())
    }
}

/// What a confirm says: stored, refused (nack) or returned (unroutable mandatory message).
fn outcome(confirmation: LapinConfirmation, message: &Published) -> Result<()> {
    if confirmation.is_nack() {
        return Err(Error::Nacked {
            exchange: message.exchange.to_string(),
            routing_key: message.routing_key.to_string(),
        });
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

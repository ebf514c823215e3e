//! What a connection declared (exchanges, queues, bindings), so that a recovery can declare it
//! again on the new connection: transient entities are gone after a broker restart, and a
//! failover node may never have had them.
//!
//! A queue the broker named (declared with an empty name) cannot get its name back: it is
//! declared anew, and the new name is used from then on by carrot's bindings, consumers and
//! calls that give the old one ([`ConnectionEvent::QueueRenamed`]).

use std::collections::HashMap;
use std::time::Duration;

use lapin::options::{
    ExchangeBindOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};

use super::convert;
use crate::entity::{ExchangeSpec, QueueSpec};
use crate::error::{Cause, Error, Result};
use crate::status::{ConnectionEvent, StatusHub};
use crate::table::FieldTable;

#[derive(Clone, Debug)]
struct RecordedQueue {
    spec: QueueSpec,
    /// Declared with an empty name: the broker chose `spec.name`.
    server_named: bool,
}

#[derive(Clone, Debug, PartialEq)]
struct Binding {
    queue: String,
    exchange: String,
    key: String,
    arguments: FieldTable,
}

/// An exchange-to-exchange binding.
#[derive(Clone, Debug, PartialEq)]
struct ExchangeBinding {
    destination: String,
    source: String,
    key: String,
    arguments: FieldTable,
}

/// The entities one connection declared, in declaration order.
#[derive(Clone, Debug, Default)]
pub(super) struct Topology {
    exchanges: Vec<ExchangeSpec>,
    queues: Vec<RecordedQueue>,
    bindings: Vec<Binding>,
    exchange_bindings: Vec<ExchangeBinding>,
    /// Old names of server-named queues to their current names.
    renamed: HashMap<String, String>,
    /// Consumers of this connection per queue, to forget an auto-delete queue with its last.
    consumers: HashMap<String, usize>,
}

impl Topology {
    /// The name to use now for a queue (a server-named queue renamed by a recovery).
    pub(super) fn resolve(&self, queue: &str) -> Option<String> {
        self.renamed.get(queue).cloned()
    }

    pub(super) fn exchange_declared(&mut self, spec: &ExchangeSpec) {
        if spec.name.is_empty() || spec.name.starts_with("amq.") {
            return;
        }
        self.exchanges.retain(|e| e.name != spec.name);
        self.exchanges.push(spec.clone());
    }

    pub(super) fn exchange_deleted(&mut self, name: &str) {
        self.exchanges.retain(|e| e.name != name);
        self.bindings.retain(|b| b.exchange != name);
        self.exchange_bindings
            .retain(|b| b.source != name && b.destination != name);
    }

    pub(super) fn exchange_bound(
        &mut self,
        destination: &str,
        source: &str,
        key: &str,
        arguments: &FieldTable,
    ) {
        let binding = ExchangeBinding {
            destination: destination.into(),
            source: source.into(),
            key: key.into(),
            arguments: arguments.clone(),
        };
        if !self.exchange_bindings.contains(&binding) {
            self.exchange_bindings.push(binding);
        }
    }

    pub(super) fn exchange_unbound(
        &mut self,
        destination: &str,
        source: &str,
        key: &str,
        arguments: &FieldTable,
    ) {
        self.exchange_bindings.retain(|b| {
            !(b.destination == destination
                && b.source == source
                && b.key == key
                && &b.arguments == arguments)
        });
    }

    pub(super) fn queue_declared(&mut self, spec: &QueueSpec, assigned: &str) {
        let mut spec = spec.clone();
        let server_named = spec.name.is_empty();
        spec.name = assigned.to_string();
        self.queues.retain(|q| q.spec.name != assigned);
        self.queues.push(RecordedQueue { spec, server_named });
    }

    pub(super) fn queue_deleted(&mut self, name: &str) {
        self.queues.retain(|q| q.spec.name != name);
        self.bindings.retain(|b| b.queue != name);
        self.renamed.retain(|_, new| new != name);
    }

    pub(super) fn bound(&mut self, queue: &str, exchange: &str, key: &str, arguments: &FieldTable) {
        let binding = Binding {
            queue: queue.into(),
            exchange: exchange.into(),
            key: key.into(),
            arguments: arguments.clone(),
        };
        if !self.bindings.contains(&binding) {
            self.bindings.push(binding);
        }
    }

    pub(super) fn unbound(
        &mut self,
        queue: &str,
        exchange: &str,
        key: &str,
        arguments: &FieldTable,
    ) {
        self.bindings.retain(|b| {
            !(b.queue == queue
                && b.exchange == exchange
                && b.key == key
                && &b.arguments == arguments)
        });
    }

    pub(super) fn consumer_started(&mut self, queue: &str) {
        *self.consumers.entry(queue.to_string()).or_default() += 1;
    }

    /// A consumer of this connection stopped; an auto-delete queue goes with the last one
    /// (the broker deletes it), so it is no longer restored.
    pub(super) fn consumer_ended(&mut self, queue: &str) {
        let Some(count) = self.consumers.get_mut(queue) else {
            return;
        };
        *count = count.saturating_sub(1);
        if *count == 0 {
            self.consumers.remove(queue);
            if self
                .queues
                .iter()
                .any(|q| q.spec.name == queue && q.spec.auto_delete)
            {
                self.queue_deleted(queue);
            }
        }
    }

    /// Learns what a replay found: queues renamed and entities that could not be restored.
    pub(super) fn learn(&mut self, replayed: &Topology) {
        for (old, new) in &replayed.renamed {
            if self.renamed.get(old) != Some(new) {
                self.rename(old, new);
            }
        }
        self.exchanges
            .retain(|e| replayed.exchanges.iter().any(|r| r.name == e.name));
        self.queues
            .retain(|q| replayed.queues.iter().any(|r| r.spec.name == q.spec.name));
        self.bindings.retain(|b| replayed.bindings.contains(b));
        self.exchange_bindings
            .retain(|b| replayed.exchange_bindings.contains(b));
    }

    fn rename(&mut self, old: &str, new: &str) {
        for q in &mut self.queues {
            if q.spec.name == old {
                q.spec.name = new.to_string();
            }
        }
        for b in &mut self.bindings {
            if b.queue == old {
                b.queue = new.to_string();
            }
        }
        if let Some(n) = self.consumers.remove(old) {
            self.consumers.insert(new.to_string(), n);
        }
        // Names given before earlier renames follow too.
        for target in self.renamed.values_mut() {
            if target == old {
                *target = new.to_string();
            }
        }
        self.renamed.insert(old.to_string(), new.to_string());
    }
}

/// Declares again, on a new connection, everything in `topology`; returns it updated (renamed
/// queues, entities dropped because the broker refused them). An error means the attempt
/// must be retried: the connection failed, or an exclusive queue still belongs to the lost
/// connection on the broker's side.
pub(super) async fn replay(
    topology: Topology,
    connection: &lapin::Connection,
    hub: &StatusHub,
    timeout: Duration,
) -> Result<Topology> {
    let mut replay = Replay {
        connection,
        channel: None,
        timeout,
    };
    let mut done = topology.clone();
    for spec in &topology.exchanges {
        if let Err(e) = replay.exchange(spec).await? {
            not_restored(hub, format!("exchange {:?}", spec.name), e);
            done.exchanges.retain(|x| x.name != spec.name);
        }
    }
    for queue in &topology.queues {
        match replay.queue(queue).await? {
            Ok(name) if name != queue.spec.name => {
                hub.emit(ConnectionEvent::QueueRenamed {
                    old: queue.spec.name.clone(),
                    new: name.clone(),
                });
                done.rename(&queue.spec.name, &name);
            }
            Ok(_) => {}
            Err(e) => {
                not_restored(hub, format!("queue {:?}", queue.spec.name), e);
                done.queue_deleted(&queue.spec.name);
            }
        }
    }
    for binding in done.bindings.clone() {
        if let Err(e) = replay.bind(&binding).await? {
            not_restored(
                hub,
                format!(
                    "binding of queue {:?} to exchange {:?} with key {:?}",
                    binding.queue, binding.exchange, binding.key
                ),
                e,
            );
            done.bindings.retain(|b| b != &binding);
        }
    }
    for binding in done.exchange_bindings.clone() {
        if let Err(e) = replay.bind_exchange(&binding).await? {
            not_restored(
                hub,
                format!(
                    "binding of exchange {:?} to exchange {:?} with key {:?}",
                    binding.destination, binding.source, binding.key
                ),
                e,
            );
            done.exchange_bindings.retain(|b| b != &binding);
        }
    }
    if let Some(channel) = replay.channel.take() {
        let _ = tokio::time::timeout(timeout, channel.close(200, "OK".into())).await;
    }
    Ok(done)
}

fn not_restored(hub: &StatusHub, entity: String, cause: Error) {
    hub.emit(ConnectionEvent::NotRestored {
        entity,
        cause: cause.to_string(),
    });
}

/// One replay: a channel, reopened after each refusal (the broker closes it).
struct Replay<'a> {
    connection: &'a lapin::Connection,
    channel: Option<lapin::Channel>,
    timeout: Duration,
}

/// The outer error retries the recovery; the inner one drops the entity.
type Step<T> = Result<std::result::Result<T, Error>>;

impl Replay<'_> {
    async fn channel(&mut self) -> Result<lapin::Channel> {
        if let Some(channel) = &self.channel {
            if channel.status().connected() {
                return Ok(channel.clone());
            }
        }
        let channel = self.step(self.connection.create_channel()).await?;
        let channel = channel.map_err(|e| match e {
            lost @ Error::ConnectionClosed { .. } => lost,
            other => Error::ConnectionClosed {
                reply_code: None,
                reply_text: other.to_string(),
                source: Some(Cause::new(other)),
            },
        })?;
        self.channel = Some(channel.clone());
        Ok(channel)
    }

    /// Runs one declaration within the timeout; a lost connection or a timeout fails the
    /// whole recovery attempt (to be retried), a refusal only this step.
    async fn step<T>(
        &self,
        future: impl std::future::Future<Output = lapin::Result<T>>,
    ) -> Step<T> {
        match tokio::time::timeout(self.timeout, future).await {
            Err(_) => Err(Error::connection_closed(format!(
                "no answer within {:?} while declaring entities again",
                self.timeout
            ))),
            Ok(Ok(value)) => Ok(Ok(value)),
            Ok(Err(e))
                if convert::is_connection_loss(&e) || !self.connection.status().connected() =>
            {
                Err(convert::lost_during(e, "lost again during the recovery"))
            }
            Ok(Err(e)) => match convert::error(e) {
                // The broker still counts the lost connection as the owner of an exclusive
                // queue until it notices the loss: try again later.
                Error::ResourceLocked(text) => Err(Error::ConnectionClosed {
                    reply_code: None,
                    reply_text: format!(
                        "an exclusive queue still belongs to the lost connection ({text}); retrying"
                    ),
                    source: Some(Cause::new(Error::ResourceLocked(text))),
                }),
                other => Ok(Err(other)),
            },
        }
    }

    async fn exchange(&mut self, spec: &ExchangeSpec) -> Step<()> {
        let channel = self.channel().await?;
        let arguments = match convert::to_lapin_table(&spec.arguments) {
            Ok(arguments) => arguments,
            Err(e) => return Ok(Err(e)),
        };
        let options = ExchangeDeclareOptions {
            durable: spec.durable,
            auto_delete: spec.auto_delete,
            internal: spec.internal,
            ..Default::default()
        };
        self.step(channel.exchange_declare(
            spec.name.as_str().into(),
            super::channel::kind(spec.kind),
            options,
            arguments,
        ))
        .await
    }

    async fn queue(&mut self, queue: &RecordedQueue) -> Step<String> {
        let channel = self.channel().await?;
        let arguments = match convert::to_lapin_table(&queue.spec.arguments) {
            Ok(arguments) => arguments,
            Err(e) => return Ok(Err(e)),
        };
        let name = if queue.server_named {
            ""
        } else {
            queue.spec.name.as_str()
        };
        let options = QueueDeclareOptions {
            durable: queue.spec.durable,
            exclusive: queue.spec.exclusive,
            auto_delete: queue.spec.auto_delete,
            ..Default::default()
        };
        let declared = self
            .step(channel.queue_declare(name.into(), options, arguments))
            .await?;
        Ok(declared.map(|q| q.name().as_str().to_string()))
    }

    async fn bind(&mut self, b: &Binding) -> Step<()> {
        let channel = self.channel().await?;
        let arguments = match convert::to_lapin_table(&b.arguments) {
            Ok(arguments) => arguments,
            Err(e) => return Ok(Err(e)),
        };
        self.step(channel.queue_bind(
            b.queue.as_str().into(),
            b.exchange.as_str().into(),
            b.key.as_str().into(),
            QueueBindOptions::default(),
            arguments,
        ))
        .await
    }

    async fn bind_exchange(&mut self, b: &ExchangeBinding) -> Step<()> {
        let channel = self.channel().await?;
        let arguments = match convert::to_lapin_table(&b.arguments) {
            Ok(arguments) => arguments,
            Err(e) => return Ok(Err(e)),
        };
        self.step(channel.exchange_bind(
            b.destination.as_str().into(),
            b.source.as_str().into(),
            b.key.as_str().into(),
            ExchangeBindOptions::default(),
            arguments,
        ))
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::ExchangeType;

    #[test]
    fn deleting_forgets_bindings_and_renames_follow() {
        let mut t = Topology::default();
        t.exchange_declared(&ExchangeSpec::new("ex", ExchangeType::Direct));
        t.queue_declared(&QueueSpec::new(""), "amq.gen-1");
        t.bound("amq.gen-1", "ex", "k", &FieldTable::new());
        t.rename("amq.gen-1", "amq.gen-2");
        assert_eq!(t.resolve("amq.gen-1").as_deref(), Some("amq.gen-2"));
        assert_eq!(t.bindings[0].queue, "amq.gen-2");
        t.rename("amq.gen-2", "amq.gen-3");
        assert_eq!(t.resolve("amq.gen-1").as_deref(), Some("amq.gen-3"));
        t.exchange_bound("ex", "upstream", "k", &FieldTable::new());
        t.exchange_bound("downstream", "ex", "k", &FieldTable::new());
        t.exchange_bound("downstream", "other", "k", &FieldTable::new());
        t.exchange_deleted("ex");
        assert!(t.bindings.is_empty());
        assert_eq!(t.exchange_bindings.len(), 1, "{:?}", t.exchange_bindings);
        t.exchange_unbound("downstream", "other", "k", &FieldTable::new());
        assert!(t.exchange_bindings.is_empty());
    }

    #[test]
    fn an_auto_delete_queue_is_forgotten_with_its_last_consumer() {
        let mut t = Topology::default();
        t.queue_declared(&QueueSpec::new("q").auto_delete(true), "q");
        t.consumer_started("q");
        t.consumer_started("q");
        t.consumer_ended("q");
        assert_eq!(t.queues.len(), 1);
        t.consumer_ended("q");
        assert!(t.queues.is_empty());
    }

    #[test]
    fn reserved_and_default_exchanges_are_not_recorded() {
        let mut t = Topology::default();
        t.exchange_declared(&ExchangeSpec::new("", ExchangeType::Direct));
        t.exchange_declared(&ExchangeSpec::new("amq.topic", ExchangeType::Topic));
        assert!(t.exchanges.is_empty());
    }
}

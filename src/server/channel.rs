//! One AMQP channel of a client: its methods carried out on a channel of the embedded broker,
//! content frames assembled into messages, consumers forwarded as basic.deliver, publisher
//! confirms sent in publishing order.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use amq_protocol::frame::AMQPContentHeader;
use amq_protocol::protocol::{basic, channel, confirm, exchange, queue, tx, AMQPClass};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::access::{Permit, Resource};
use super::guard::Guard;
use super::metrics::QueueCounters;
use super::output::Output;
use super::reply::Refusal;
use crate::backend::amqp::convert::{from_lapin_properties, from_lapin_table};
use crate::backend::{Channel, Confirmation, PublishFlags, Published};
use crate::entity::{ExchangeSpec, ExchangeType, QueueSpec};
use crate::error::Error;

/// Publishes and settlements a channel may have waiting for their commit.
const IN_FLIGHT: usize = 1024;

/// RabbitMQ's direct reply-to: consuming from this pseudo-queue (no-ack) gives the channel an
/// address, `amq.rabbitmq.reply-to.<token>`, that a publish with this `reply_to` carries
/// instead; a reply published to the default exchange with the address as its routing key
/// comes back to that consumer. Here the address is the name of an exclusive, auto-delete
/// queue of the channel's connection, consumed by that consumer (so it goes with it).
const REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// Delivery tags handed out on the channel and not yet settled (for `multiple` and recover),
/// each with the counters of its queue (an ack counts there).
pub(super) type Outstanding = Arc<Mutex<BTreeMap<u64, Arc<QueueCounters>>>>;

/// A message whose content frames are still arriving.
struct Incoming {
    publish: basic::Publish,
    properties: Option<crate::properties::Properties>,
    size: u64,
    body: Vec<u8>,
}

/// What the connection must do after a method.
pub(super) enum After {
    /// Nothing more.
    Continue,
    /// Close the channel with this refusal (or the connection, if it is hard).
    Refuse(Refusal),
    /// The client closed the channel; it is gone.
    Closed,
}

/// A client's channel.
pub(super) struct ClientChannel {
    id: u16,
    backend: Arc<dyn Channel>,
    out: Output,
    incoming: Option<Incoming>,
    /// Outcomes still to come (sqlite commits), and in confirm mode every publish, settled
    /// in the order the client sent them by the channel's pipeline task.
    pipeline: mpsc::UnboundedSender<(Pending, OwnedSemaphorePermit)>,
    /// Bounds what the pipeline holds: beyond it the client waits (its frames stay in the
    /// socket), as RabbitMQ's credit flow makes a publisher that outruns the disk wait.
    in_flight: Arc<Semaphore>,
    /// Whether the client asked for publisher confirms.
    confirm_mode: bool,
    /// Whether the client said tx.select; the settlements of the open transaction (tag,
    /// multiple), to forget at its commit.
    tx_mode: bool,
    tx_settled: Vec<(u64, bool)>,
    published: u64,
    outstanding: Outstanding,
    consumers: HashMap<String, JoinHandle<()>>,
    max_body: usize,
    metrics: Arc<super::Metrics>,
    /// Held while a method of the client is carried out, up to its reply: a consumer whose
    /// queue that method deleted sends its basic.cancel after the method's reply (RabbitMQ's
    /// order: queue.delete-ok, then basic.cancel), even when the reply waits for a commit.
    replying: Arc<tokio::sync::Mutex<()>>,
    /// Whether the client takes basic.cancel from the server (`consumer_cancel_notify`).
    cancel_notify: bool,
    /// The direct reply-to consumer's tag and the channel's reply address.
    reply_to: Option<(String, String)>,
    /// The connection's user and vhost: the permission checks.
    guard: Arc<Guard>,
    context: Arc<Context>,
    /// What the management API shows of the channel.
    state: Arc<super::clients::ChannelState>,
}

/// What every channel of a connection shares.
pub(super) struct Context {
    pub(super) metrics: Arc<super::Metrics>,
    /// The user in its vhost.
    pub(super) guard: Arc<Guard>,
    /// Whether the client takes basic.cancel from the server (`consumer_cancel_notify`).
    pub(super) cancel_notify: bool,
    /// Where the management API sees the connection's consumers.
    pub(super) view: Option<Arc<super::clients::View>>,
}

fn ok<M>(result: Result<M, Error>) -> Result<M, Refusal> {
    result.map_err(|e| Refusal::of(&e))
}

impl ClientChannel {
    pub(super) fn new(
        id: u16,
        backend: Arc<dyn Channel>,
        out: Output,
        max_body: usize,
        refusals: mpsc::UnboundedSender<LateRefusal>,
        context: Arc<Context>,
    ) -> Self {
        let pipeline = pipeline(id, out.clone(), refusals);
        let outstanding = Outstanding::default();
        let state = Arc::new(super::clients::ChannelState::new(outstanding.clone()));
        if let Some(view) = &context.view {
            view.channels.lock().insert(id, state.clone());
        }
        ClientChannel {
            id,
            backend,
            out,
            incoming: None,
            pipeline,
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
            confirm_mode: false,
            tx_mode: false,
            tx_settled: Vec::new(),
            published: 0,
            outstanding,
            consumers: HashMap::new(),
            max_body,
            metrics: context.metrics.clone(),
            replying: Arc::default(),
            cancel_notify: context.cancel_notify,
            reply_to: None,
            guard: context.guard.clone(),
            context,
            state,
        }
    }

    /// Carries out one method of the client.
    pub(super) async fn method(&mut self, method: AMQPClass) -> After {
        if self.incoming.is_some() {
            return After::Refuse(Refusal::connection(
                505,
                "expected content header for class 60, got a method frame",
            ));
        }
        let replying = self.replying.clone();
        let _replying = replying.lock().await;
        match self.dispatch(method).await {
            Ok(after) => after,
            Err(refusal) => After::Refuse(refusal),
        }
    }

    async fn dispatch(&mut self, method: AMQPClass) -> Result<After, Refusal> {
        let id = self.id;
        let reply = |m: AMQPClass| (id, m);
        let mut answer: Option<(u16, AMQPClass)> = None;
        match method {
            AMQPClass::Channel(channel::AMQPMethod::Close(_)) => {
                self.shutdown().await;
                self.out
                    .method(
                        id,
                        AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                    )
                    .await;
                return Ok(After::Closed);
            }
            AMQPClass::Channel(channel::AMQPMethod::Flow(flow)) => {
                ok(self.backend.flow(flow.active).await)?;
                answer = Some(reply(AMQPClass::Channel(channel::AMQPMethod::FlowOk(
                    channel::FlowOk {
                        active: flow.active,
                    },
                ))));
            }
            AMQPClass::Channel(channel::AMQPMethod::Open(_)) => {
                return Err(Refusal::connection(
                    504,
                    format!("second 'channel.open' seen on channel {id}"),
                ));
            }
            AMQPClass::Exchange(m) => answer = self.exchange(m).await?.map(reply),
            AMQPClass::Queue(m) => answer = self.queue(m).await?.map(reply),
            AMQPClass::Basic(m) => answer = self.basic(m).await?.map(reply),
            AMQPClass::Confirm(confirm::AMQPMethod::Select(select)) => {
                if self.tx_mode {
                    return Err(Refusal::channel(
                        406,
                        "cannot switch from tx to confirm mode",
                    ));
                }
                self.confirm_mode = true;
                self.state
                    .confirm
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                if !select.nowait {
                    answer = Some(reply(AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(
                        confirm::SelectOk {},
                    ))));
                }
            }
            AMQPClass::Tx(m) => answer = Some(reply(self.tx(m).await?)),
            other => {
                return Err(Refusal::connection(
                    503,
                    format!(
                        "method {}.{} is not valid here",
                        other.get_amqp_class_id(),
                        other.get_amqp_method_id()
                    ),
                ))
            }
        }
        if let Some((channel, method)) = answer {
            self.out.method(channel, method).await;
        }
        Ok(After::Continue)
    }

    /// tx.select, tx.commit, tx.rollback.
    async fn tx(&mut self, method: tx::AMQPMethod) -> Result<AMQPClass, Refusal> {
        Ok(match method {
            tx::AMQPMethod::Select(_) => {
                if self.confirm_mode {
                    return Err(Refusal::channel(
                        406,
                        "cannot switch from confirm to tx mode",
                    ));
                }
                ok(self.backend.tx_select().await)?;
                self.tx_mode = true;
                self.state
                    .transactional
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                AMQPClass::Tx(tx::AMQPMethod::SelectOk(tx::SelectOk {}))
            }
            tx::AMQPMethod::Commit(_) => {
                let returned = ok(self.backend.tx_commit().await)?;
                for (message, error) in returned {
                    returned_message(&self.out, self.id, &error, &message).await;
                }
                for (tag, multiple) in std::mem::take(&mut self.tx_settled) {
                    self.settled(tag, multiple);
                }
                AMQPClass::Tx(tx::AMQPMethod::CommitOk(tx::CommitOk {}))
            }
            tx::AMQPMethod::Rollback(_) => {
                ok(self.backend.tx_rollback().await)?;
                self.tx_settled.clear();
                AMQPClass::Tx(tx::AMQPMethod::RollbackOk(tx::RollbackOk {}))
            }
            _ => {
                return Err(Refusal::connection(
                    503,
                    "unexpected tx method from a client",
                ))
            }
        })
    }

    async fn exchange(
        &mut self,
        method: exchange::AMQPMethod,
    ) -> Result<Option<AMQPClass>, Refusal> {
        Ok(match method {
            exchange::AMQPMethod::Declare(d) => {
                let kind = match d.kind.as_str() {
                    "direct" => ExchangeType::Direct,
                    "fanout" => ExchangeType::Fanout,
                    "topic" => ExchangeType::Topic,
                    "headers" => ExchangeType::Headers,
                    other if d.passive => {
                        let _ = other;
                        ExchangeType::Direct
                    }
                    other => {
                        return Err(Refusal::connection(
                            503,
                            format!("invalid exchange type '{other}'"),
                        ))
                    }
                };
                if !d.passive {
                    self.guard
                        .check(Permit::Configure, Resource::Exchange(d.exchange.as_str()))?;
                }
                let mut spec = ExchangeSpec::new(d.exchange.as_str(), kind);
                spec.durable = d.durable;
                spec.auto_delete = d.auto_delete;
                spec.internal = d.internal;
                spec.arguments = from_lapin_table(&d.arguments);
                ok(self.backend.declare_exchange(&spec, d.passive).await)?;
                (!d.nowait).then_some(AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(
                    exchange::DeclareOk {},
                )))
            }
            exchange::AMQPMethod::Delete(d) => {
                self.guard
                    .check(Permit::Configure, Resource::Exchange(d.exchange.as_str()))?;
                ok(self
                    .backend
                    .delete_exchange(d.exchange.as_str(), d.if_unused)
                    .await)?;
                (!d.nowait).then_some(AMQPClass::Exchange(exchange::AMQPMethod::DeleteOk(
                    exchange::DeleteOk {},
                )))
            }
            exchange::AMQPMethod::Bind(b) => {
                self.check_binding(
                    Resource::Exchange(b.destination.as_str()),
                    b.source.as_str(),
                )?;
                let arguments = from_lapin_table(&b.arguments);
                ok(self
                    .backend
                    .bind_exchange(
                        b.destination.as_str(),
                        b.source.as_str(),
                        b.routing_key.as_str(),
                        &arguments,
                    )
                    .await)?;
                (!b.nowait).then_some(AMQPClass::Exchange(exchange::AMQPMethod::BindOk(
                    exchange::BindOk {},
                )))
            }
            exchange::AMQPMethod::Unbind(u) => {
                self.check_binding(
                    Resource::Exchange(u.destination.as_str()),
                    u.source.as_str(),
                )?;
                let arguments = from_lapin_table(&u.arguments);
                ok(self
                    .backend
                    .unbind_exchange(
                        u.destination.as_str(),
                        u.source.as_str(),
                        u.routing_key.as_str(),
                        &arguments,
                    )
                    .await)?;
                (!u.nowait).then_some(AMQPClass::Exchange(exchange::AMQPMethod::UnbindOk(
                    exchange::UnbindOk {},
                )))
            }
            _ => {
                return Err(Refusal::connection(
                    503,
                    "unexpected exchange method from a client",
                ))
            }
        })
    }

    async fn queue(&mut self, method: queue::AMQPMethod) -> Result<Option<AMQPClass>, Refusal> {
        Ok(match method {
            // The direct reply-to pseudo-queue always exists (RabbitMQ counts one consumer).
            queue::AMQPMethod::Declare(d) if d.queue.as_str() == REPLY_TO => {
                (!d.nowait).then(|| {
                    AMQPClass::Queue(queue::AMQPMethod::DeclareOk(queue::DeclareOk {
                        queue: REPLY_TO.into(),
                        message_count: 0,
                        consumer_count: 1,
                    }))
                })
            }
            queue::AMQPMethod::Declare(d) => {
                if !d.passive && !d.queue.as_str().is_empty() {
                    self.guard
                        .check(Permit::Configure, Resource::Queue(d.queue.as_str()))?;
                }
                let mut spec = QueueSpec::new(d.queue.as_str());
                spec.durable = d.durable;
                spec.exclusive = d.exclusive;
                spec.auto_delete = d.auto_delete;
                spec.arguments = from_lapin_table(&d.arguments);
                let info = ok(self.backend.declare_queue(&spec, d.passive).await)?;
                if !d.passive && d.queue.as_str().is_empty() {
                    // RabbitMQ checks a server-named queue's name once it has made it.
                    if let Err(refusal) = self
                        .guard
                        .check(Permit::Configure, Resource::Queue(&info.name))
                    {
                        let _ = self.backend.delete_queue(&info.name, false, false).await;
                        return Err(refusal);
                    }
                }
                (!d.nowait).then(|| {
                    AMQPClass::Queue(queue::AMQPMethod::DeclareOk(queue::DeclareOk {
                        queue: info.name.as_str().into(),
                        message_count: info.message_count,
                        consumer_count: info.consumer_count,
                    }))
                })
            }
            queue::AMQPMethod::Bind(b) => {
                self.check_binding(Resource::Queue(b.queue.as_str()), b.exchange.as_str())?;
                let arguments = from_lapin_table(&b.arguments);
                ok(self
                    .backend
                    .bind(
                        b.queue.as_str(),
                        b.exchange.as_str(),
                        b.routing_key.as_str(),
                        &arguments,
                    )
                    .await)?;
                (!b.nowait).then_some(AMQPClass::Queue(queue::AMQPMethod::BindOk(
                    queue::BindOk {},
                )))
            }
            queue::AMQPMethod::Unbind(u) => {
                self.check_binding(Resource::Queue(u.queue.as_str()), u.exchange.as_str())?;
                let arguments = from_lapin_table(&u.arguments);
                ok(self
                    .backend
                    .unbind(
                        u.queue.as_str(),
                        u.exchange.as_str(),
                        u.routing_key.as_str(),
                        &arguments,
                    )
                    .await)?;
                Some(AMQPClass::Queue(queue::AMQPMethod::UnbindOk(
                    queue::UnbindOk {},
                )))
            }
            queue::AMQPMethod::Purge(p) => {
                self.guard
                    .check(Permit::Read, Resource::Queue(p.queue.as_str()))?;
                let message_count = ok(self.backend.purge(p.queue.as_str()).await)?;
                (!p.nowait).then_some(AMQPClass::Queue(queue::AMQPMethod::PurgeOk(
                    queue::PurgeOk { message_count },
                )))
            }
            queue::AMQPMethod::Delete(d) => {
                self.guard
                    .check(Permit::Configure, Resource::Queue(d.queue.as_str()))?;
                let message_count = ok(self
                    .backend
                    .delete_queue(d.queue.as_str(), d.if_unused, d.if_empty)
                    .await)?;
                (!d.nowait).then_some(AMQPClass::Queue(queue::AMQPMethod::DeleteOk(
                    queue::DeleteOk { message_count },
                )))
            }
            _ => {
                return Err(Refusal::connection(
                    503,
                    "unexpected queue method from a client",
                ))
            }
        })
    }

    async fn basic(&mut self, method: basic::AMQPMethod) -> Result<Option<AMQPClass>, Refusal> {
        Ok(match method {
            basic::AMQPMethod::Publish(publish) => {
                if publish.immediate {
                    // RabbitMQ 3 does not implement it, and closes the connection (py-amqp's
                    // own tests check for exactly this answer).
                    return Err(Refusal::connection(540, "immediate=true"));
                }
                self.incoming = Some(Incoming {
                    publish,
                    properties: None,
                    size: 0,
                    body: Vec::new(),
                });
                None
            }
            basic::AMQPMethod::Qos(q) => {
                // amq-protocol reads prefetch_size and drops it (RabbitMQ does not implement it).
                ok(self.backend.qos(0, q.prefetch_count, q.global).await)?;
                self.state
                    .prefetch_count
                    .store(q.prefetch_count, std::sync::atomic::Ordering::Relaxed);
                Some(AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})))
            }
            basic::AMQPMethod::Consume(c) => {
                if c.queue.as_str() != REPLY_TO {
                    self.guard
                        .check(Permit::Read, Resource::Queue(c.queue.as_str()))?;
                }
                let priority = consumer_priority(c.queue.as_str(), &c.arguments)?;
                let queue = match c.queue.as_str() {
                    REPLY_TO => self.reply_queue(c.no_ack).await?,
                    other => other.to_string(),
                };
                let consumed = self
                    .backend
                    .consume(
                        &queue,
                        c.consumer_tag.as_str(),
                        c.no_ack,
                        c.exclusive,
                        priority,
                    )
                    .await;
                let (tag, deliveries) = match consumed {
                    Ok(consumed) => consumed,
                    Err(e) => {
                        if c.queue.as_str() == REPLY_TO {
                            let _ = self.backend.delete_queue(&queue, false, false).await;
                        }
                        return Err(Refusal::of(&e));
                    }
                };
                let queue_name = queue.clone();
                if c.queue.as_str() == REPLY_TO {
                    self.reply_to = Some((tag.to_string(), queue));
                }
                if !c.nowait {
                    self.out
                        .method(
                            self.id,
                            AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
                                consumer_tag: (*tag).into(),
                            })),
                        )
                        .await;
                }
                let task = tokio::spawn(forward(
                    self.id,
                    tag.clone(),
                    deliveries,
                    self.out.clone(),
                    (!c.no_ack).then(|| self.outstanding.clone()),
                    (
                        self.metrics.clone(),
                        self.metrics.queue(self.guard.vhost(), &queue_name),
                    ),
                    self.cancel_notify.then(|| self.replying.clone()),
                ));
                self.consumers.insert(tag.to_string(), task);
                if let Some(view) = &self.context.view {
                    view.consumers.lock().insert(
                        (self.id, tag.to_string()),
                        super::clients::ConsumerInfo {
                            channel: self.id,
                            tag: tag.to_string(),
                            queue: queue_name.clone(),
                            ack_required: !c.no_ack,
                            exclusive: c.exclusive,
                        },
                    );
                }
                None
            }
            basic::AMQPMethod::Cancel(c) => {
                ok(self.backend.cancel(c.consumer_tag.as_str()).await)?;
                if let Some((tag, queue)) = self.reply_to.take() {
                    if tag == c.consumer_tag.as_str() {
                        let _ = self.backend.delete_queue(&queue, false, false).await;
                    } else {
                        self.reply_to = Some((tag, queue));
                    }
                }
                self.consumers.remove(c.consumer_tag.as_str());
                if let Some(view) = &self.context.view {
                    view.consumers
                        .lock()
                        .remove(&(self.id, c.consumer_tag.to_string()));
                }
                (!c.nowait).then(|| {
                    AMQPClass::Basic(basic::AMQPMethod::CancelOk(basic::CancelOk {
                        consumer_tag: c.consumer_tag.clone(),
                    }))
                })
            }
            basic::AMQPMethod::Get(g) => {
                self.guard
                    .check(Permit::Read, Resource::Queue(g.queue.as_str()))?;
                let got = ok(self.backend.get(g.queue.as_str(), g.no_ack).await)?;
                match got {
                    None => Some(AMQPClass::Basic(basic::AMQPMethod::GetEmpty(
                        basic::GetEmpty {},
                    ))),
                    Some(d) => {
                        let counters = self.metrics.queue(self.guard.vhost(), g.queue.as_str());
                        counters.delivered(1);
                        if !g.no_ack {
                            self.lock().insert(d.delivery_tag, counters);
                        }
                        let left = self
                            .backend
                            .declare_queue(&QueueSpec::new(g.queue.as_str()), true)
                            .await
                            .map(|info| info.message_count)
                            .unwrap_or(0);
                        let method = AMQPClass::Basic(basic::AMQPMethod::GetOk(basic::GetOk {
                            delivery_tag: d.delivery_tag,
                            redelivered: d.redelivered,
                            exchange: (*d.message.exchange).into(),
                            routing_key: (*d.message.routing_key).into(),
                            message_count: left,
                        }));
                        self.out.with_content(self.id, method, &d.message).await;
                        self.metrics.delivered();
                        None
                    }
                }
            }
            // Settled without waiting for a commit (the client expects no answer): a refusal
            // (an unknown delivery tag) closes the channel when it comes.
            basic::AMQPMethod::Ack(a) => {
                let covered = self.counters(a.delivery_tag, a.multiple);
                self.metrics.acknowledged(covered.len() as u64);
                for counters in covered {
                    counters.acknowledged();
                }
                let outcome = ok(self.backend.ack_pipelined(a.delivery_tag, a.multiple))?;
                self.pending_settle(outcome, 80).await;
                self.settle_or_hold(a.delivery_tag, a.multiple);
                None
            }
            basic::AMQPMethod::Reject(r) => {
                let outcome = ok(self.backend.reject_pipelined(r.delivery_tag, r.requeue))?;
                self.pending_settle(outcome, 90).await;
                self.settle_or_hold(r.delivery_tag, false);
                None
            }
            basic::AMQPMethod::Nack(n) => {
                for tag in self.tags(n.delivery_tag, n.multiple) {
                    let outcome = ok(self.backend.reject_pipelined(tag, n.requeue))?;
                    self.pending_settle(outcome, 120).await;
                }
                self.settle_or_hold(n.delivery_tag, n.multiple);
                None
            }
            basic::AMQPMethod::Recover(r) => {
                self.recover(r.requeue)?;
                Some(AMQPClass::Basic(basic::AMQPMethod::RecoverOk(
                    basic::RecoverOk {},
                )))
            }
            basic::AMQPMethod::RecoverAsync(r) => {
                self.recover(r.requeue)?;
                None
            }
            _ => {
                return Err(Refusal::connection(
                    503,
                    "unexpected basic method from a client",
                ))
            }
        })
    }

    /// A settlement whose outcome is still to come goes to the pipeline.
    async fn pending_settle(&self, outcome: Confirmation, method_id: u16) {
        if let Confirmation::Pending(_) = outcome {
            self.to_pipeline(Pending::Settle(outcome, method_id)).await;
        }
    }

    /// Hands an outcome to the pipeline, once it has room.
    async fn to_pipeline(&self, pending: Pending) {
        if let Ok(permit) = self.in_flight.clone().acquire_owned().await {
            let _ = self.pipeline.send((pending, permit));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<QueueCounters>>> {
        self.outstanding.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The outstanding tags a nack covers (`multiple`: every one up to `tag`).
    fn tags(&self, tag: u64, multiple: bool) -> Vec<u64> {
        if !multiple {
            return vec![tag];
        }
        let all = self.lock();
        if tag == 0 {
            all.keys().copied().collect()
        } else {
            all.range(..=tag).map(|(t, _)| *t).collect()
        }
    }

    /// The queue counters of the deliveries an ack covers.
    fn counters(&self, tag: u64, multiple: bool) -> Vec<Arc<QueueCounters>> {
        let all = self.lock();
        match (multiple, tag) {
            (false, _) => all.get(&tag).cloned().into_iter().collect(),
            (true, 0) => all.values().cloned().collect(),
            (true, _) => all.range(..=tag).map(|(_, c)| c.clone()).collect(),
        }
    }

    /// Forgets settled tags, or in a transaction, at its commit.
    fn settle_or_hold(&mut self, tag: u64, multiple: bool) {
        match self.tx_mode {
            true => self.tx_settled.push((tag, multiple)),
            false => self.settled(tag, multiple),
        }
    }

    fn settled(&self, tag: u64, multiple: bool) {
        let mut all = self.lock();
        if !multiple {
            all.remove(&tag);
        } else if tag == 0 {
            all.clear();
        } else {
            *all = all.split_off(&(tag + 1));
        }
    }

    /// basic.recover: every unacknowledged delivery goes back to its queue; `requeue = false`
    /// (redeliver to the same consumer) is refused with 540, as RabbitMQ refuses it.
    fn recover(&self, requeue: bool) -> Result<(), Refusal> {
        if !requeue {
            return Err(Refusal::connection(540, "requeue=false"));
        }
        let tags: Vec<u64> = std::mem::take(&mut *self.lock()).into_keys().collect();
        for tag in tags {
            ok(self.backend.reject(tag, true))?;
        }
        Ok(())
    }

    /// A content header frame of the message being published.
    pub(super) fn header(
        &mut self,
        header: AMQPContentHeader,
    ) -> Result<Option<Incoming2>, Refusal> {
        let Some(incoming) = self.incoming.as_mut() else {
            return Err(Refusal::connection(505, "unexpected content header frame"));
        };
        if incoming.properties.is_some() {
            return Err(Refusal::connection(
                505,
                "a second content header for one message",
            ));
        }
        if header.body_size > self.max_body as u64 {
            self.incoming = None;
            return Err(Refusal::channel(
                406,
                format!(
                    "message size {} is larger than configured max size {}",
                    header.body_size, self.max_body
                ),
            ));
        }
        incoming.properties = Some(from_lapin_properties(&header.properties));
        incoming.size = header.body_size;
        incoming.body.reserve(header.body_size as usize);
        Ok(self.complete())
    }

    /// A body frame of the message being published.
    pub(super) fn body(&mut self, part: Vec<u8>) -> Result<Option<Incoming2>, Refusal> {
        let Some(incoming) = self.incoming.as_mut() else {
            return Err(Refusal::connection(505, "unexpected content body frame"));
        };
        if incoming.properties.is_none() {
            return Err(Refusal::connection(505, "a content body before its header"));
        }
        incoming.body.extend_from_slice(&part);
        if incoming.body.len() as u64 > incoming.size {
            return Err(Refusal::connection(
                501,
                "the content body is longer than its header said",
            ));
        }
        Ok(self.complete())
    }

    fn complete(&mut self) -> Option<Incoming2> {
        let whole = self
            .incoming
            .as_ref()
            .is_some_and(|i| i.properties.is_some() && i.body.len() as u64 == i.size);
        if !whole {
            return None;
        }
        let incoming = self.incoming.take()?;
        Some(Incoming2 {
            message: Arc::new(Published {
                body: incoming.body.into_boxed_slice(),
                properties: incoming.properties.unwrap_or_default(),
                exchange: incoming.publish.exchange.as_str().into(),
                routing_key: incoming.publish.routing_key.as_str().into(),
            }),
            flags: PublishFlags {
                mandatory: incoming.publish.mandatory,
                immediate: incoming.publish.immediate,
                confirm: false,
                awaited: false,
            },
        })
    }

    /// A binding needs write on its destination and read on its source exchange.
    fn check_binding(&self, destination: Resource<'_>, source: &str) -> Result<(), Refusal> {
        self.guard.check(Permit::Write, destination)?;
        self.guard.check(Permit::Read, Resource::Exchange(source))
    }

    /// The queue behind the channel's direct reply-to address, made now: refused as RabbitMQ
    /// refuses a reply consumer that acknowledges, or a second one on the channel.
    async fn reply_queue(&mut self, no_ack: bool) -> Result<String, Refusal> {
        if !no_ack {
            return Err(Refusal::channel(406, "reply consumer cannot acknowledge"));
        }
        if self.reply_to.is_some() {
            return Err(Refusal::channel(406, "reply consumer already set"));
        }
        let token = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u16(self.id);
            h.finish()
        };
        let address = format!("{REPLY_TO}.{token:016x}");
        let mut spec = QueueSpec::new(&address).durable(false).exclusive(true);
        spec.auto_delete = true;
        spec.arguments
            .insert(crate::backend::rules::REPLY_QUEUE.into(), true.into());
        ok(self.backend.declare_queue(&spec, false).await)?;
        Ok(address)
    }

    /// Publishes a complete message without waiting for its commit (sqlite): its outcome
    /// (and in confirm mode its confirm) follows in order, through the pipeline.
    pub(super) async fn publish(&mut self, mut message: Incoming2) -> After {
        if let Err(refusal) = self
            .guard
            .check(Permit::Write, Resource::Exchange(&message.message.exchange))
        {
            return After::Refuse(refusal);
        }
        if message.message.properties.reply_to() == Some(REPLY_TO) {
            let Some((_, address)) = &self.reply_to else {
                return After::Refuse(Refusal::channel(406, "fast reply consumer does not exist"));
            };
            let original = &message.message;
            message.message = Arc::new(Published {
                body: original.body.clone(),
                properties: original.properties.clone().with_reply_to(address.clone()),
                exchange: original.exchange.clone(),
                routing_key: original.routing_key.clone(),
            });
        }
        let mut flags = message.flags;
        flags.confirm = true;
        let result = self.backend.publish(message.message.clone(), flags).await;
        let outcome = match result {
            Ok(confirmation) => confirmation,
            // Returned in order with the outcomes still to come.
            Err(Error::Unroutable { .. }) => {
                Confirmation::Pending(Box::pin(std::future::ready(result.map(|_| ()))))
            }
            Err(e) => return After::Refuse(Refusal::of(&e)),
        };
        let number = self.confirm_mode.then(|| {
            self.metrics.confirmed();
            self.published += 1;
            self.published
        });
        if number.is_some() || matches!(outcome, Confirmation::Pending(_)) {
            self.to_pipeline(Pending::Publish(number, outcome, message.message))
                .await;
        }
        After::Continue
    }

    /// Ends the channel: consumers stop, unacknowledged deliveries go back to their queues.
    pub(super) async fn shutdown(&mut self) {
        for (_, task) in self.consumers.drain() {
            task.abort();
        }
        let _ = self.backend.close().await;
    }
}

impl Drop for ClientChannel {
    fn drop(&mut self) {
        for (_, task) in self.consumers.drain() {
            task.abort();
        }
        self.backend.shutdown();
    }
}

/// The consumer priority of basic.consume's arguments (`x-priority`, an integer; 0 without),
/// refused as RabbitMQ refuses another type.
fn consumer_priority(
    queue: &str,
    arguments: &amq_protocol::types::FieldTable,
) -> Result<i32, Refusal> {
    use amq_protocol::types::AMQPValue;
    let Some(value) = arguments
        .inner()
        .iter()
        .find(|(k, _)| k.as_str() == "x-priority")
        .map(|(_, v)| v)
    else {
        return Ok(0);
    };
    let priority = match value {
        AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongLongInt(n) => Some(*n),
        _ => None,
    };
    let kind = match value {
        AMQPValue::Boolean(_) => "bool",
        AMQPValue::Float(_) => "float",
        AMQPValue::Double(_) => "double",
        AMQPValue::DecimalValue(_) => "decimal",
        AMQPValue::ShortString(_) => "shortstr",
        AMQPValue::LongString(_) => "longstr",
        AMQPValue::FieldArray(_) => "array",
        AMQPValue::Timestamp(_) => "timestamp",
        AMQPValue::FieldTable(_) => "table",
        AMQPValue::ByteArray(_) => "binary",
        AMQPValue::Void => "void",
        _ => "an integer out of range",
    };
    priority.and_then(|p| i32::try_from(p).ok()).ok_or_else(|| {
        Refusal::channel(
            406,
            format!(
                "invalid arg 'x-priority' for queue '{queue}' in vhost '/': \"expected integer, got {kind}\""
            ),
        )
    })
}

/// What a channel's pipeline task settles, in the order the client sent it.
pub(super) enum Pending {
    /// A publish: its confirm number in confirm mode, its outcome, and the message (for a
    /// basic.return).
    Publish(Option<u64>, Confirmation, Arc<Published>),
    /// An ack, reject or nack (the basic method id, for a refusal) and its outcome.
    Settle(Confirmation, u16),
}

/// A refusal that comes after its method: the channel, the refusal, and the class and method
/// that caused it.
pub(super) type LateRefusal = (u16, Refusal, u16, u16);

/// The task that settles a channel's outcomes in order: a returned message is returned (and
/// in confirm mode then acknowledged, as RabbitMQ does), a nacked one nacked, and anything
/// refused after the fact (its exchange gone, an unknown delivery tag) closes the channel.
fn pipeline(
    id: u16,
    out: Output,
    refusals: mpsc::UnboundedSender<LateRefusal>,
) -> mpsc::UnboundedSender<(Pending, OwnedSemaphorePermit)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Pending, OwnedSemaphorePermit)>();
    tokio::spawn(async move {
        // Each permit goes when its outcome is settled.
        while let Some((item, _permit)) = rx.recv().await {
            let (number, confirmation, message, method_id) = match item {
                Pending::Publish(number, confirmation, message) => {
                    (number, confirmation, Some(message), 40)
                }
                Pending::Settle(confirmation, method_id) => (None, confirmation, None, method_id),
            };
            let outcome = match confirmation {
                Confirmation::Done => Ok(()),
                Confirmation::Pending(pending) => pending.await,
            };
            let confirmed = match outcome {
                Ok(()) => true,
                Err(e @ Error::Unroutable { .. }) => {
                    if let Some(message) = &message {
                        returned_message(&out, id, &e, message).await;
                    }
                    true
                }
                Err(Error::Nacked { .. }) => false,
                Err(e) => {
                    let _ = refusals.send((id, Refusal::of(&e), 60, method_id));
                    return;
                }
            };
            let Some(tag) = number else { continue };
            let method = if confirmed {
                basic::AMQPMethod::Ack(basic::Ack {
                    delivery_tag: tag,
                    multiple: false,
                })
            } else {
                basic::AMQPMethod::Nack(basic::Nack {
                    delivery_tag: tag,
                    multiple: false,
                    requeue: false,
                })
            };
            if !out.method(id, AMQPClass::Basic(method)).await {
                break;
            }
        }
    });
    tx
}

/// A basic.return of a message no queue took (mandatory) or no consumer could take now
/// (immediate).
async fn returned_message(out: &Output, channel: u16, error: &Error, message: &Published) {
    let Error::Unroutable {
        reply_code,
        reply_text,
        exchange,
        routing_key,
    } = error
    else {
        return;
    };
    let method = AMQPClass::Basic(basic::AMQPMethod::Return(basic::Return {
        reply_code: *reply_code,
        reply_text: reply_text.as_str().into(),
        exchange: exchange.as_str().into(),
        routing_key: routing_key.as_str().into(),
    }));
    out.with_content(channel, method, message).await;
}

/// A complete message, ready to publish.
pub(super) struct Incoming2 {
    message: Arc<Published>,
    flags: PublishFlags,
}

/// Forwards a consumer's deliveries to the client; tells it when the broker cancels the
/// consumer (its queue deleted) if it takes basic.cancel (`notify_cancel`: the lock held while
/// the channel replies to a method, so that the cancel follows the reply), as RabbitMQ does
/// with consumer_cancel_notify.
async fn forward(
    channel: u16,
    tag: Arc<str>,
    mut deliveries: crate::backend::DeliveryStream,
    out: Output,
    outstanding: Option<Outstanding>,
    (metrics, counters): (Arc<super::Metrics>, Arc<QueueCounters>),
    notify_cancel: Option<Arc<tokio::sync::Mutex<()>>>,
) {
    // What is there now goes out in one buffer (up to 64 KiB): one wake of the writer and
    // one write for many deliveries.
    while let Some(first) = deliveries.recv().await {
        let mut buffer = Vec::new();
        let mut given = 0;
        let mut next = Some(first);
        let mut cancelled = false;
        while let Some(delivery) = next.take() {
            match delivery {
                Ok(d) => {
                    if let Some(outstanding) = &outstanding {
                        outstanding
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(d.delivery_tag, counters.clone());
                    }
                    out.encode_deliver(
                        &mut buffer,
                        channel,
                        &tag,
                        d.delivery_tag,
                        d.redelivered,
                        &d.message,
                    );
                    given += 1;
                }
                Err(_) => {
                    cancelled = true;
                    break;
                }
            }
            if buffer.len() < 64 * 1024 {
                next = deliveries.try_recv();
            }
        }
        if !buffer.is_empty() {
            if !out.send_raw(buffer).await {
                return;
            }
            metrics.delivered_many(given);
            counters.delivered(given);
        }
        if cancelled {
            let Some(replying) = notify_cancel else {
                return; // the client does not take basic.cancel: cancelled silently
            };
            // After the reply of the method being carried out, which may be what deleted the
            // queue.
            let _after = replying.lock().await;
            let cancel = AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
                consumer_tag: (*tag).into(),
                nowait: true,
            }));
            out.method(channel, cancel).await;
            return;
        }
    }
}

//! One client connection: the AMQP 0-9-1 handshake as RabbitMQ does it (protocol header,
//! start / start-ok with PLAIN or AMQPLAIN, tune / tune-ok, open), then frames dispatched to
//! channels, heartbeats both ways, and a close in RabbitMQ's manner for every error.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{channel, connection, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch};

use super::channel::{After, ClientChannel, LateRefusal};
use super::clients::{ClientInfo, Registered};
use super::frames::{FrameReader, ReadError};
use super::guard::Guard;
use super::output::{Output, QUEUED};
use super::reply::Refusal;
use super::Shared;
use crate::connection::BrokerConnection;

/// The protocol header of AMQP 0-9-1, the only version spoken.
const HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
/// What the server proposes in connection.tune (RabbitMQ's defaults).
const CHANNEL_MAX: u16 = 2047;
const FRAME_MAX: u32 = 131_072;
const HEARTBEAT: u16 = 60;
/// The smallest frame_max AMQP allows.
const FRAME_MIN: u32 = 4096;
/// How long a client has for the whole handshake.
pub(super) const HANDSHAKE: Duration = Duration::from_secs(10);

/// Serves one client until it closes, fails, or the server shuts down.
pub(super) async fn serve<S>(stream: S, peer: SocketAddr, tls: bool, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (read, write) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel::<Vec<u8>>(QUEUED);
    let (writer, stalled) = super::output::writer(write, rx, shared.write_timeout, peer);
    let (refusals, refused) = mpsc::unbounded_channel();
    let mut session = Session {
        refusals,
        refused,
        stalled,
        out: Output::new(tx, FRAME_MAX as usize),
        reader: FrameReader::new(read, FRAME_MAX as usize),
        peer,
        shared: shared.clone(),
        channels: HashMap::new(),
        closing: HashMap::new(),
        broker: None,
        heartbeat: Duration::ZERO,
        channel_max: CHANNEL_MAX,
        user: String::new(),
        name: String::new(),
        cancel_notify: false,
        tls,
        guard: None,
        registered: None,
    };
    shared.metrics.connection_opened();
    match tokio::time::timeout(HANDSHAKE, session.handshake()).await {
        Ok(Ok(())) => {
            tracing::info!(client = %peer, user = %session.user, name = %session.name, "connection opened");
            session.run().await;
        }
        Ok(Err(reason)) => tracing::info!(client = %peer, %reason, "connection refused"),
        Err(_) => tracing::info!(client = %peer, "handshake timed out"),
    }
    for _ in session.channels.drain() {
        shared.metrics.channel_closed();
    }
    session.closing.clear();
    session.registered.take();
    if let Some(broker) = session.broker.take() {
        // Unacknowledged deliveries go back, exclusive queues go.
        let _ = broker.close().await;
    }
    drop(session);
    let _ = writer.await;
    shared.metrics.connection_closed();
}

struct Session<R> {
    /// Refusals that come after the method (a publish whose commit failed).
    refusals: mpsc::UnboundedSender<LateRefusal>,
    refused: mpsc::UnboundedReceiver<LateRefusal>,
    /// Fires when the client has read nothing for the send timeout.
    stalled: oneshot::Receiver<()>,
    out: Output,
    reader: FrameReader<R>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    channels: HashMap<u16, ClientChannel>,
    /// Channels the server closed, waiting for the client's close-ok.
    closing: HashMap<u16, ()>,
    broker: Option<BrokerConnection>,
    heartbeat: Duration,
    channel_max: u16,
    user: String,
    name: String,
    /// Whether the client takes basic.cancel from the server (its `consumer_cancel_notify`
    /// capability): RabbitMQ cancels the consumers of a deleted queue silently otherwise.
    cancel_notify: bool,
    tls: bool,
    /// The user in its vhost, once the vhost is open.
    guard: Option<Arc<Guard>>,
    /// Its entry among the server's connections, once the vhost is open.
    registered: Option<Registered>,
}

impl<R: AsyncRead + Unpin> Session<R> {
    async fn handshake(&mut self) -> Result<(), String> {
        let header = self
            .reader
            .protocol_header()
            .await
            .map_err(|e| format!("{e:?}"))?;
        if &header != HEADER {
            // RabbitMQ answers a wrong header with the one it speaks, then closes.
            self.out.send_raw(HEADER.to_vec()).await;
            return Err(format!("protocol header {header:?} is not AMQP 0-9-1"));
        }
        self.out
            .method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::Start(start())),
            )
            .await;
        let start_ok = match self.next_handshake_frame().await? {
            AMQPClass::Connection(connection::AMQPMethod::StartOk(ok)) => ok,
            other => return Err(self.refuse_handshake(other).await),
        };
        let properties = start_ok.client_properties.inner();
        self.name = match properties
            .iter()
            .find(|(k, _)| k.as_str() == "connection_name")
        {
            Some((_, AMQPValue::LongString(s))) => s.to_string(),
            _ => String::new(),
        };
        self.cancel_notify = properties
            .iter()
            .find(|(k, _)| k.as_str() == "capabilities")
            .and_then(|(_, v)| match v {
                AMQPValue::FieldTable(capabilities) => capabilities
                    .inner()
                    .iter()
                    .find(|(k, _)| k.as_str() == "consumer_cancel_notify")
                    .map(|(_, v)| matches!(v, AMQPValue::Boolean(true))),
                _ => None,
            })
            .unwrap_or(false);
        let login =
            super::auth::credentials(start_ok.mechanism.as_str(), start_ok.response.as_bytes())
                .and_then(|(name, password)| {
                    self.shared.access.login(&name, &password, self.peer.ip())
                });
        let Some(user) = login.map(|user| user.name) else {
            let refusal = Refusal::connection(
                403,
                format!(
                    "Login was refused using authentication mechanism {}. For details see the broker logfile.",
                    start_ok.mechanism.as_str()
                ),
            );
            self.close_connection(&refusal, 10, 11).await;
            return Err("login refused".into());
        };
        self.user = user;
        self.out
            .method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::Tune(connection::Tune {
                    channel_max: CHANNEL_MAX,
                    frame_max: FRAME_MAX,
                    heartbeat: HEARTBEAT,
                })),
            )
            .await;
        let tune_ok = match self.next_handshake_frame().await? {
            AMQPClass::Connection(connection::AMQPMethod::TuneOk(ok)) => ok,
            other => return Err(self.refuse_handshake(other).await),
        };
        let frame_max = match tune_ok.frame_max {
            0 => FRAME_MAX,
            n => n.min(FRAME_MAX),
        };
        if frame_max < FRAME_MIN {
            let refusal =
                Refusal::connection(530, format!("frame_max={frame_max} < {FRAME_MIN} min size"));
            self.close_connection(&refusal, 10, 31).await;
            return Err("frame_max too small".into());
        }
        self.reader.frame_max = frame_max as usize;
        self.out.set_frame_max(frame_max as usize);
        self.channel_max = match tune_ok.channel_max {
            0 => CHANNEL_MAX,
            n => n.min(CHANNEL_MAX),
        };
        self.heartbeat = Duration::from_secs(u64::from(tune_ok.heartbeat));
        let open = match self.next_handshake_frame().await? {
            AMQPClass::Connection(connection::AMQPMethod::Open(open)) => open,
            other => return Err(self.refuse_handshake(other).await),
        };
        let vhost = open.virtual_host.as_str();
        let grant = match self.shared.access.open_vhost(&self.user, vhost) {
            Ok(grant) => grant,
            Err(refusal) => {
                let refusal = Refusal::connection(530, refusal);
                self.close_connection(&refusal, 10, 40).await;
                return Err(format!("vhost {vhost} refused"));
            }
        };
        let broker = self
            .shared
            .vhost_broker(vhost)
            .await
            .map_err(|e| e.to_string())?;
        self.broker = Some(broker);
        self.guard = Some(Arc::new(Guard::new(
            self.shared.access.clone(),
            &self.user,
            vhost,
            grant,
        )));
        let local = self.shared.listen;
        self.registered = Some(
            self.shared.clients.register(ClientInfo {
                name: format!("{} -> {}", self.peer, local),
                peer: self.peer,
                local,
                user: self.user.clone(),
                vhost: vhost.to_string(),
                client_name: self.name.clone(),
                connected_at: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
                tls: self.tls,
                channels: Vec::new(),
                consumers: Vec::new(),
            }),
        );
        self.out
            .method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::OpenOk(connection::OpenOk {})),
            )
            .await;
        Ok(())
    }

    async fn next_handshake_frame(&mut self) -> Result<AMQPClass, String> {
        loop {
            match self.reader.next().await {
                Ok(AMQPFrame::Method(0, method)) => return Ok(method),
                Ok(AMQPFrame::Heartbeat) => continue,
                Ok(other) => {
                    let refusal = Refusal::connection(
                        505,
                        format!("unexpected frame during the handshake: {other:?}"),
                    );
                    self.close_connection(&refusal, 0, 0).await;
                    return Err("unexpected frame".into());
                }
                Err(e) => return Err(format!("{e:?}")),
            }
        }
    }

    async fn refuse_handshake(&mut self, method: AMQPClass) -> String {
        let refusal = Refusal::connection(503, "unexpected method during the connection handshake");
        self.close_connection(
            &refusal,
            method.get_amqp_class_id(),
            method.get_amqp_method_id(),
        )
        .await;
        "unexpected method".into()
    }

    /// Sends connection.close and waits (briefly) for close-ok.
    async fn close_connection(&mut self, refusal: &Refusal, class_id: u16, method_id: u16) {
        self.out
            .method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                    reply_code: refusal.code,
                    reply_text: refusal.text.as_str().into(),
                    class_id,
                    method_id,
                })),
            )
            .await;
        let wait = async {
            loop {
                match self.reader.next().await {
                    Ok(AMQPFrame::Method(
                        0,
                        AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)),
                    ))
                    | Err(_) => return,
                    // RabbitMQ discards everything else once it has sent close.
                    Ok(_) => continue,
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(3), wait).await;
    }

    async fn run(&mut self) {
        let mut shutdown: watch::Receiver<bool> = self.shared.shutdown.clone();
        let silence = if self.heartbeat.is_zero() {
            None
        } else {
            Some(self.heartbeat * 2)
        };
        let mut beat = tokio::time::interval(if self.heartbeat.is_zero() {
            Duration::from_secs(3600)
        } else {
            self.heartbeat / 2
        });
        beat.tick().await;
        // When the client was last heard from, checked at each beat (a timer per frame would
        // cost more than the frame).
        let mut heard = tokio::time::Instant::now();
        loop {
            tokio::select! {
                frame = self.reader.next() => {
                    heard = tokio::time::Instant::now();
                    match frame {
                        Ok(frame) => {
                            if !self.frame(frame).await {
                                return;
                            }
                        }
                        Err(ReadError::Closed) => {
                            tracing::info!(client = %self.peer, "client closed the connection");
                            return;
                        }
                        Err(ReadError::Io(e)) => {
                            tracing::info!(client = %self.peer, error = %e, "connection lost");
                            return;
                        }
                        Err(ReadError::TooLarge(size)) => {
                            let refusal = Refusal::connection(501, format!("frame size {size} is larger than frame_max {}", self.reader.frame_max));
                            self.close_connection(&refusal, 0, 0).await;
                            return;
                        }
                        Err(ReadError::Malformed(reason)) => {
                            let refusal = Refusal::connection(501, format!("malformed frame: {reason}"));
                            self.close_connection(&refusal, 0, 0).await;
                            return;
                        }
                    }
                }
                _ = beat.tick(), if !self.heartbeat.is_zero() => {
                    if silence.is_some_and(|limit| heard.elapsed() > limit) {
                        tracing::info!(client = %self.peer, "missed heartbeats from client, timeout: {}s", self.heartbeat.as_secs());
                        return;
                    }
                    if !self.out.send(&[AMQPFrame::Heartbeat]).await {
                        return;
                    }
                }
                Some((id, refusal, class_id, method_id)) = self.refused.recv() => {
                    if self.channels.contains_key(&id) && !self.refuse(id, refusal, class_id, method_id).await {
                        return;
                    }
                }
                _ = &mut self.stalled => return,
                Some(reason) = forced(&mut self.registered) => {
                    let refusal = Refusal::connection(320, reason);
                    self.close_connection(&refusal, 0, 0).await;
                    return;
                }
                _ = shutdown.changed() => {
                    let refusal = Refusal::connection(320, "broker forced connection closure with reason 'shutdown'");
                    self.close_connection(&refusal, 0, 0).await;
                    return;
                }
            }
        }
    }

    /// Handles one frame; false when the connection ends.
    async fn frame(&mut self, frame: AMQPFrame) -> bool {
        match frame {
            AMQPFrame::Heartbeat => true,
            AMQPFrame::Method(0, method) => match method {
                AMQPClass::Connection(connection::AMQPMethod::Close(_)) => {
                    self.out
                        .method(
                            0,
                            AMQPClass::Connection(connection::AMQPMethod::CloseOk(
                                connection::CloseOk {},
                            )),
                        )
                        .await;
                    // As RabbitMQ: the client closes the socket once it has the close-ok;
                    // closing it first would race the client's read of close-ok.
                    let linger = async { while self.reader.next().await.is_ok() {} };
                    let _ = tokio::time::timeout(Duration::from_secs(3), linger).await;
                    false
                }
                AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)) => false,
                AMQPClass::Connection(connection::AMQPMethod::Blocked(_))
                | AMQPClass::Connection(connection::AMQPMethod::Unblocked(_)) => true,
                // A client refreshing its credentials (OAuth tokens): RabbitMQ's internal
                // users answer update-secret-ok, whatever the new secret.
                AMQPClass::Connection(connection::AMQPMethod::UpdateSecret(_)) => {
                    let ok = connection::UpdateSecretOk {};
                    self.out
                        .method(
                            0,
                            AMQPClass::Connection(connection::AMQPMethod::UpdateSecretOk(ok)),
                        )
                        .await;
                    true
                }
                other => {
                    let refusal = Refusal::connection(503, "unexpected method on channel 0");
                    self.close_connection(
                        &refusal,
                        other.get_amqp_class_id(),
                        other.get_amqp_method_id(),
                    )
                    .await;
                    false
                }
            },
            AMQPFrame::Method(id, method) => self.channel_method(id, method).await,
            AMQPFrame::Header(id, header) => {
                let Some(channel) = self.channels.get_mut(&id) else {
                    return self.unknown_channel(id).await;
                };
                match channel.header(header) {
                    Ok(Some(message)) => self.publish(id, message).await,
                    Ok(None) => true,
                    Err(refusal) => self.refuse(id, refusal, 60, 40).await,
                }
            }
            AMQPFrame::Body(id, part) => {
                let Some(channel) = self.channels.get_mut(&id) else {
                    return self.unknown_channel(id).await;
                };
                match channel.body(part) {
                    Ok(Some(message)) => self.publish(id, message).await,
                    Ok(None) => true,
                    Err(refusal) => self.refuse(id, refusal, 60, 40).await,
                }
            }
            AMQPFrame::ProtocolHeader(_) | AMQPFrame::InvalidHeartbeat(_) => {
                let refusal = Refusal::connection(501, "unexpected frame");
                self.close_connection(&refusal, 0, 0).await;
                false
            }
        }
    }

    async fn publish(&mut self, id: u16, message: super::channel::Incoming2) -> bool {
        let Some(channel) = self.channels.get_mut(&id) else {
            return true;
        };
        self.shared.metrics.published();
        match channel.publish(message).await {
            After::Refuse(refusal) => self.refuse(id, refusal, 60, 40).await,
            _ => true,
        }
    }

    /// Drops a closed channel from the management API's view.
    fn forget_channel(&self, id: u16) {
        if let Some(registered) = &self.registered {
            registered.view.channels.lock().remove(&id);
            registered
                .view
                .consumers
                .lock()
                .retain(|(channel, _), _| *channel != id);
        }
    }

    async fn channel_method(&mut self, id: u16, method: AMQPClass) -> bool {
        if self.closing.contains_key(&id) {
            // After the server's channel.close only close-ok counts (RabbitMQ drops the rest).
            if matches!(method, AMQPClass::Channel(channel::AMQPMethod::CloseOk(_))) {
                self.closing.remove(&id);
            } else if matches!(method, AMQPClass::Channel(channel::AMQPMethod::Close(_))) {
                self.closing.remove(&id);
                self.out
                    .method(
                        id,
                        AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                    )
                    .await;
            }
            return true;
        }
        if let AMQPClass::Channel(channel::AMQPMethod::Open(_)) = &method {
            if !self.channels.contains_key(&id) {
                if id > self.channel_max {
                    let refusal = Refusal::connection(
                        530,
                        format!(
                            "channel number {id} is above channel_max {}",
                            self.channel_max
                        ),
                    );
                    self.close_connection(&refusal, 20, 10).await;
                    return false;
                }
                let (Some(broker), Some(guard)) = (&self.broker, &self.guard) else {
                    return false;
                };
                let context = Arc::new(super::channel::Context {
                    metrics: self.shared.metrics.clone(),
                    guard: guard.clone(),
                    cancel_notify: self.cancel_notify,
                    view: self.registered.as_ref().map(|r| r.view.clone()),
                });
                let backend = match broker.channel().await {
                    Ok(backend) => backend,
                    Err(e) => {
                        let refusal = Refusal::of(&e);
                        self.close_connection(&refusal, 20, 10).await;
                        return false;
                    }
                };
                let max_body = broker.max_message_size();
                let channel = ClientChannel::new(
                    id,
                    backend,
                    self.out.clone(),
                    max_body,
                    self.refusals.clone(),
                    context,
                );
                self.channels.insert(id, channel);
                self.shared.metrics.channel_opened();

                self.out
                    .method(
                        id,
                        AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {})),
                    )
                    .await;
                return true;
            }
        }
        let class_id = method.get_amqp_class_id();
        let method_id = method.get_amqp_method_id();
        let Some(channel) = self.channels.get_mut(&id) else {
            return self.unknown_channel(id).await;
        };
        match channel.method(method).await {
            After::Continue => true,
            After::Closed => {
                self.channels.remove(&id);
                self.shared.metrics.channel_closed();
                self.forget_channel(id);
                true
            }
            After::Refuse(refusal) => self.refuse(id, refusal, class_id, method_id).await,
        }
    }

    /// A frame on a channel that is not open: RabbitMQ closes the connection (504).
    async fn unknown_channel(&mut self, id: u16) -> bool {
        let refusal = Refusal::connection(504, format!("expected 'channel.open' on channel {id}"));
        self.close_connection(&refusal, 0, 0).await;
        false
    }

    /// Closes the channel (soft errors) or the connection (hard ones); false when the
    /// connection ends.
    async fn refuse(&mut self, id: u16, refusal: Refusal, class_id: u16, method_id: u16) -> bool {
        if refusal.hard {
            self.close_connection(&refusal, class_id, method_id).await;
            return false;
        }
        if let Some(mut channel) = self.channels.remove(&id) {
            channel.shutdown().await;
            self.shared.metrics.channel_closed();
            self.forget_channel(id);
        }
        self.closing.insert(id, ());
        self.out
            .method(
                id,
                AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
                    reply_code: refusal.code,
                    reply_text: refusal.text.as_str().into(),
                    class_id,
                    method_id,
                })),
            )
            .await;
        true
    }
}

/// The reason the management API gave to close the connection, when it does.
async fn forced(registered: &mut Option<Registered>) -> Option<String> {
    match registered {
        Some(registered) => registered.closed.recv().await,
        None => std::future::pending().await,
    }
}

/// connection.start: version 0-9, RabbitMQ's capabilities that carrot serve implements.
fn start() -> connection::Start {
    let mut capabilities = FieldTable::default();
    for name in [
        "publisher_confirms",
        "consumer_cancel_notify",
        "basic.nack",
        "per_consumer_qos",
        "authentication_failure_close",
        "exchange_exchange_bindings",
        "consumer_priorities",
        "direct_reply_to",
    ] {
        capabilities.insert(name.into(), AMQPValue::Boolean(true));
    }
    let mut properties = FieldTable::default();
    properties.insert("capabilities".into(), AMQPValue::FieldTable(capabilities));
    properties.insert("product".into(), AMQPValue::LongString("carrot".into()));
    properties.insert(
        "version".into(),
        AMQPValue::LongString(env!("CARGO_PKG_VERSION").into()),
    );
    properties.insert("platform".into(), AMQPValue::LongString("Rust".into()));
    properties.insert(
        "information".into(),
        AMQPValue::LongString("carrot serve: the embedded brokers on the AMQP 0-9-1 wire".into()),
    );
    connection::Start {
        version_major: 0,
        version_minor: 9,
        server_properties: properties,
        mechanisms: "PLAIN AMQPLAIN".into(),
        locales: "en_US".into(),
    }
}

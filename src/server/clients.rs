//! The connections a server has open, for the management API (`/api/connections`,
//! `/api/channels`) and for closing them: one asked by an operator, or every one of a
//! deleted vhost, with 320 CONNECTION_FORCED.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

/// What the management API shows of a connection.
#[derive(Clone, Debug)]
pub struct ClientInfo {
    /// RabbitMQ's connection name: `PEER -> LOCAL`.
    pub name: String,
    /// The client's address.
    pub peer: SocketAddr,
    /// The server's address it connected to.
    pub local: SocketAddr,
    /// The user it logged in as.
    pub user: String,
    /// The vhost it opened.
    pub vhost: String,
    /// Its `connection_name` client property, if it gave one.
    pub client_name: String,
    /// When it connected, in milliseconds since the Unix epoch.
    pub connected_at: u64,
    /// Whether it speaks TLS.
    pub tls: bool,
    /// The channels it has open.
    pub channels: Vec<ChannelInfo>,
    /// Its consumers.
    pub consumers: Vec<ConsumerInfo>,
}

/// A channel of a connection.
#[derive(Clone, Debug)]
pub struct ChannelInfo {
    /// Its number.
    pub number: u16,
    /// Whether it is in confirm mode.
    pub confirm: bool,
    /// Whether it is transactional.
    pub transactional: bool,
    /// Its consumers' prefetch count (basic.qos; 0: unlimited).
    pub prefetch_count: u16,
    /// Deliveries it has not settled yet.
    pub unacknowledged: u64,
}

/// What a channel keeps up to date for the API.
#[derive(Debug)]
pub(super) struct ChannelState {
    pub(super) confirm: AtomicBool,
    pub(super) transactional: AtomicBool,
    pub(super) prefetch_count: AtomicU16,
    /// Its unsettled deliveries (shared with the channel, counted when listed).
    pub(super) outstanding: super::channel::Outstanding,
}

impl ChannelState {
    pub(super) fn new(outstanding: super::channel::Outstanding) -> ChannelState {
        ChannelState {
            confirm: AtomicBool::new(false),
            transactional: AtomicBool::new(false),
            prefetch_count: AtomicU16::new(0),
            outstanding,
        }
    }
}

/// A consumer of a connection.
#[derive(Clone, Debug)]
pub struct ConsumerInfo {
    /// The channel it consumes on.
    pub channel: u16,
    /// Its tag.
    pub tag: String,
    /// The queue it consumes from.
    pub queue: String,
    /// Whether deliveries wait for an acknowledgement.
    pub ack_required: bool,
    /// Whether it is the queue's only consumer.
    pub exclusive: bool,
}

/// What a connection keeps up to date for the API: its channels and consumers.
#[derive(Debug, Default)]
pub(super) struct View {
    pub(super) channels: parking_lot::Mutex<BTreeMap<u16, Arc<ChannelState>>>,
    pub(super) consumers: parking_lot::Mutex<BTreeMap<(u16, String), ConsumerInfo>>,
}

#[derive(Debug)]
struct Client {
    info: ClientInfo,
    view: Arc<View>,
    close: mpsc::UnboundedSender<String>,
}

/// The open connections of a server.
#[derive(Debug, Default)]
pub(super) struct Clients {
    next: AtomicU64,
    open: parking_lot::Mutex<BTreeMap<u64, Client>>,
}

/// A connection's entry, removed when dropped.
#[derive(Debug)]
pub(super) struct Registered {
    clients: Arc<Clients>,
    id: u64,
    /// Its channels and consumers, kept up to date by the connection.
    pub(super) view: Arc<View>,
    /// Reasons to close, sent by the management API.
    pub(super) closed: mpsc::UnboundedReceiver<String>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.clients.open.lock().remove(&self.id);
    }
}

impl Clients {
    /// Adds a connection that has opened its vhost.
    pub(super) fn register(self: &Arc<Self>, info: ClientInfo) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (close, closed) = mpsc::unbounded_channel();
        let view = Arc::new(View::default());
        self.open.lock().insert(
            id,
            Client {
                info,
                view: view.clone(),
                close,
            },
        );
        Registered {
            clients: self.clone(),
            id,
            view,
            closed,
        }
    }

    /// Every open connection, in the order they connected.
    pub(super) fn list(&self) -> Vec<ClientInfo> {
        self.open
            .lock()
            .values()
            .map(|c| {
                let mut info = c.info.clone();
                info.channels = c
                    .view
                    .channels
                    .lock()
                    .iter()
                    .map(|(number, state)| ChannelInfo {
                        number: *number,
                        confirm: state.confirm.load(Ordering::Relaxed),
                        transactional: state.transactional.load(Ordering::Relaxed),
                        prefetch_count: state.prefetch_count.load(Ordering::Relaxed),
                        unacknowledged: state.outstanding.lock().map_or(0, |o| o.len() as u64),
                    })
                    .collect();
                info.consumers = c.view.consumers.lock().values().cloned().collect();
                info
            })
            .collect()
    }

    /// Closes the connection called `name` with 320 and `reason`; false if there is none.
    pub(super) fn close(&self, name: &str, reason: &str) -> bool {
        let open = self.open.lock();
        let mut found = false;
        for client in open.values().filter(|c| c.info.name == name) {
            found |= client.close.send(reason.to_string()).is_ok();
        }
        found
    }

    /// Closes every connection to `vhost` with 320 and `reason`; how many there were.
    pub(super) fn close_vhost(&self, vhost: &str, reason: &str) -> usize {
        let open = self.open.lock();
        open.values()
            .filter(|c| c.info.vhost == vhost)
            .filter(|c| c.close.send(reason.to_string()).is_ok())
            .count()
    }
}

//! What a connection sends: frames serialized into one buffer per message and queued to the
//! task that writes the socket. The queue is bounded, so a client that stops reading slows
//! its own deliveries down instead of growing the server's memory.

use std::net::SocketAddr;
use std::time::Duration;

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{basic, AMQPClass};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::backend::Published;

/// Buffers waiting for the socket, per connection.
pub(super) const QUEUED: usize = 256;

/// The task that writes a connection's socket. What is queued by then goes out in one write
/// (up to 256 KiB): one system call for many small deliveries. A client that reads nothing
/// for `write_timeout` while frames wait is cut off, and the returned receiver fires, so that
/// the connection ends and what the client held goes back to its queues.
pub(super) fn writer<W>(
    mut write: W,
    mut rx: mpsc::Receiver<Vec<u8>>,
    write_timeout: Duration,
    peer: SocketAddr,
) -> (JoinHandle<()>, oneshot::Receiver<()>)
where
    W: AsyncWrite + Send + Unpin + 'static,
{
    let (stalled, on_stall) = oneshot::channel();
    let task = tokio::spawn(async move {
        while let Some(mut batch) = rx.recv().await {
            // Once, let the tasks that are about to send run first: their frames join this
            // write (fewer, larger writes cost both sides less than many small ones).
            let mut yielded = false;
            while batch.len() < 256 * 1024 {
                match rx.try_recv() {
                    Ok(more) => batch.extend_from_slice(&more),
                    Err(_) if !yielded => {
                        yielded = true;
                        tokio::task::yield_now().await;
                    }
                    Err(_) => break,
                }
            }
            match tokio::time::timeout(write_timeout, write.write_all(&batch)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(_) => {
                    tracing::warn!(client = %peer, "the client read nothing for {}s: closing the connection", write_timeout.as_secs());
                    let _ = stalled.send(());
                    return;
                }
            }
        }
        let _ = tokio::time::timeout(write_timeout, write.shutdown()).await;
    });
    (task, on_stall)
}

/// The sending side of a connection, cheap to clone (each consumer task has one).
#[derive(Clone, Debug)]
pub(super) struct Output {
    tx: mpsc::Sender<Vec<u8>>,
    /// The largest frame the client accepts (negotiated frame_max).
    frame_max: usize,
}

impl Output {
    pub(super) fn new(tx: mpsc::Sender<Vec<u8>>, frame_max: usize) -> Self {
        Output { tx, frame_max }
    }

    pub(super) fn set_frame_max(&mut self, frame_max: usize) {
        self.frame_max = frame_max;
    }

    /// Sends frames as one write; false once the connection is gone.
    pub(super) async fn send(&self, frames: &[AMQPFrame]) -> bool {
        let mut buffer = Vec::new();
        for frame in frames {
            super::frames::write(&mut buffer, frame);
        }
        self.tx.send(buffer).await.is_ok()
    }

    /// Sends bytes as they are (the protocol header answering a wrong one).
    pub(super) async fn send_raw(&self, bytes: Vec<u8>) -> bool {
        self.tx.send(bytes).await.is_ok()
    }

    /// Sends one method.
    pub(super) async fn method(&self, channel: u16, method: AMQPClass) -> bool {
        self.send(&[AMQPFrame::Method(channel, method)]).await
    }

    /// Sends a method that carries a message (deliver, get-ok, return), with its content
    /// header and its body cut to the frame size.
    pub(super) async fn with_content(
        &self,
        channel: u16,
        method: AMQPClass,
        message: &Published,
    ) -> bool {
        let mut buffer = Vec::new();
        self.encode_with_content(&mut buffer, channel, method, message);
        self.tx.send(buffer).await.is_ok()
    }

    /// Appends a method that carries a message to `buffer` (several go out in one write).
    pub(super) fn encode_with_content(
        &self,
        buffer: &mut Vec<u8>,
        channel: u16,
        method: AMQPClass,
        message: &Published,
    ) {
        let properties = crate::backend::amqp::convert::to_lapin_properties(&message.properties)
            .unwrap_or_default();
        super::frames::write(buffer, &AMQPFrame::Method(channel, method));
        super::frames::write(
            buffer,
            &AMQPFrame::Header(
                channel,
                amq_protocol::frame::AMQPContentHeader {
                    class_id: 60,
                    body_size: message.body.len() as u64,
                    properties,
                },
            ),
        );
        let chunk = self.frame_max.saturating_sub(8).max(1);
        for part in message.body.chunks(chunk) {
            super::frames::write_body(buffer, channel, part);
        }
    }

    /// Appends a basic.deliver of `message` to consumer `tag` to `buffer`.
    pub(super) fn encode_deliver(
        &self,
        buffer: &mut Vec<u8>,
        channel: u16,
        tag: &str,
        delivery_tag: u64,
        redelivered: bool,
        message: &Published,
    ) {
        let method = AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
            consumer_tag: tag.into(),
            delivery_tag,
            redelivered,
            exchange: (*message.exchange).into(),
            routing_key: (*message.routing_key).into(),
        }));
        self.encode_with_content(buffer, channel, method, message);
    }
}

//! A client speaking raw AMQP frames, for what no client library sends: abusive input, and
//! exchanges compared frame for frame between RabbitMQ and `carrot serve`.

#![allow(dead_code)] // each test file uses its part

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use amq_protocol::frame::{gen_frame, parse_frame, AMQPFrame, WriteContext};
use amq_protocol::protocol::{channel, connection, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable};

/// What py-amqp (kombu's client) says of itself: the capabilities that change what a broker
/// sends.
fn client_properties() -> FieldTable {
    let mut capabilities = FieldTable::default();
    for name in [
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
    ] {
        capabilities.insert(name.into(), AMQPValue::Boolean(true));
    }
    let mut properties = FieldTable::default();
    properties.insert("capabilities".into(), AMQPValue::FieldTable(capabilities));
    properties.insert(
        "product".into(),
        AMQPValue::LongString("carrot tests".into()),
    );
    properties
}

/// A client speaking raw frames.
pub struct Raw {
    pub stream: TcpStream,
    buffer: Vec<u8>,
}

impl Raw {
    pub fn connect(address: SocketAddr) -> Raw {
        let stream = TcpStream::connect(address).expect("connect");
        stream.set_nodelay(true).expect("no delay");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a read timeout");
        Raw {
            stream,
            buffer: Vec::new(),
        }
    }

    /// How long a read waits before the connection counts as gone (10 s by default).
    pub fn read_timeout(&mut self, limit: Duration) {
        self.stream
            .set_read_timeout(Some(limit))
            .expect("a read timeout");
    }

    pub fn send(&mut self, frame: &AMQPFrame) {
        let context = gen_frame(frame)(WriteContext::from(Vec::new())).expect("a frame");
        self.stream.write_all(&context.write).expect("write");
    }

    pub fn method(&mut self, channel: u16, method: AMQPClass) {
        self.send(&AMQPFrame::Method(channel, method));
    }

    /// The next frame, or `None` when the server closed the connection.
    pub fn next(&mut self) -> Option<AMQPFrame> {
        loop {
            if let Ok((rest, frame)) = parse_frame(&self.buffer[..]) {
                let used = self.buffer.len() - rest.len();
                self.buffer.drain(..used);
                return Some(frame);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next method, skipping heartbeats.
    pub fn next_method(&mut self) -> Option<AMQPClass> {
        loop {
            match self.next()? {
                AMQPFrame::Method(_, method) => return Some(method),
                AMQPFrame::Heartbeat => continue,
                other => panic!("expected a method, got {other:?}"),
            }
        }
    }

    /// Protocol header, start-ok (PLAIN), tune-ok, open: a connection ready for channels.
    pub fn handshake(address: SocketAddr, password: &str) -> (Raw, Option<AMQPClass>) {
        Raw::handshake_with(address, password, 0)
    }

    /// The handshake, with this heartbeat interval in tune-ok.
    pub fn handshake_with(
        address: SocketAddr,
        password: &str,
        heartbeat: u16,
    ) -> (Raw, Option<AMQPClass>) {
        let mut raw = Raw::connect(address);
        raw.stream
            .write_all(b"AMQP\x00\x00\x09\x01")
            .expect("header");
        let Some(AMQPClass::Connection(connection::AMQPMethod::Start(start))) = raw.next_method()
        else {
            panic!("no connection.start")
        };
        assert_eq!((start.version_major, start.version_minor), (0, 9));
        assert!(start.mechanisms.to_string().contains("PLAIN"));
        raw.method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties: client_properties(),
                mechanism: "PLAIN".into(),
                response: format!("\0guest\0{password}").into(),
                locale: "en_US".into(),
            })),
        );
        let tune = match raw.next_method() {
            Some(AMQPClass::Connection(connection::AMQPMethod::Tune(tune))) => tune,
            other => return (raw, other),
        };
        raw.method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                channel_max: tune.channel_max,
                frame_max: tune.frame_max,
                heartbeat,
            })),
        );
        raw.method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                virtual_host: "/".into(),
            })),
        );
        let opened = raw.next_method();
        (raw, opened)
    }

    pub fn open(address: SocketAddr) -> Raw {
        let (raw, opened) = Raw::handshake(address, "guest");
        assert!(
            matches!(
                opened,
                Some(AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)))
            ),
            "{opened:?}"
        );
        raw
    }

    /// Opens channel `id` and checks the open-ok.
    pub fn open_channel(&mut self, id: u16) {
        self.method(
            id,
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
        );
        assert!(matches!(
            self.next_method(),
            Some(AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)))
        ));
    }

    /// The reply code of the connection.close the server sends next.
    pub fn closed_with(&mut self) -> u16 {
        match self.next_method() {
            Some(AMQPClass::Connection(connection::AMQPMethod::Close(close))) => {
                self.method(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})),
                );
                close.reply_code
            }
            other => panic!("expected connection.close, got {other:?}"),
        }
    }
}

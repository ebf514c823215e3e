//! AMQP 0-9-1 frames on a byte stream, with amq-protocol's parser and generator: reading
//! bounded by the negotiated frame size, writing into one buffer per batch.

use amq_protocol::frame::{gen_frame, parse_frame, AMQPFrame};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Frame type, channel, size and end octet: what a frame adds to its payload.
const OVERHEAD: usize = 8;

/// Why reading frames stopped.
#[derive(Debug)]
pub(super) enum ReadError {
    /// The peer closed the connection (cleanly between frames, or in the middle of one).
    Closed,
    /// The bytes are not an AMQP frame: 501 FRAME_ERROR.
    Malformed(String),
    /// A frame larger than the negotiated frame_max: 501 FRAME_ERROR.
    TooLarge(usize),
    /// The socket failed.
    Io(std::io::Error),
}

/// Frames read from one connection.
pub(super) struct FrameReader<R> {
    reader: R,
    buffer: Vec<u8>,
    start: usize,
    /// The largest frame accepted, overhead included.
    pub(super) frame_max: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub(super) fn new(reader: R, frame_max: usize) -> Self {
        FrameReader {
            reader,
            buffer: Vec::with_capacity(64 * 1024),
            start: 0,
            frame_max,
        }
    }

    /// The 8-byte protocol header every connection starts with.
    pub(super) async fn protocol_header(&mut self) -> Result<[u8; 8], ReadError> {
        while self.buffer.len() - self.start < 8 {
            self.fill().await?;
        }
        let mut header = [0u8; 8];
        header.copy_from_slice(&self.buffer[self.start..self.start + 8]);
        self.start += 8;
        Ok(header)
    }

    /// The next frame.
    pub(super) async fn next(&mut self) -> Result<AMQPFrame, ReadError> {
        loop {
            let pending = &self.buffer[self.start..];
            if pending.len() >= 7 {
                let size = u32::from_be_bytes([pending[3], pending[4], pending[5], pending[6]]);
                let whole = (size as usize).saturating_add(OVERHEAD);
                if whole > self.frame_max {
                    return Err(ReadError::TooLarge(whole));
                }
                if pending.len() >= whole {
                    return match parse_frame(&pending[..whole]) {
                        Ok((_, frame)) => {
                            self.start += whole;
                            Ok(frame)
                        }
                        Err(e) => Err(ReadError::Malformed(format!("{e:?}"))),
                    };
                }
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> Result<(), ReadError> {
        if self.start > 0 && self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
        } else if self.start > self.buffer.capacity() / 2 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = self.reader.read(&mut chunk).await.map_err(ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// Appends a body frame of `part` to `out`, without copying the part into a frame first.
pub(super) fn write_body(out: &mut Vec<u8>, channel: u16, part: &[u8]) {
    out.push(3);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&(part.len() as u32).to_be_bytes());
    out.extend_from_slice(part);
    out.push(0xCE);
}

/// Appends the serialized frame to `out`.
pub(super) fn write(out: &mut Vec<u8>, frame: &AMQPFrame) {
    let buffer = std::mem::take(out);
    let context = amq_protocol::frame::WriteContext::from(buffer);
    match gen_frame(frame)(context) {
        Ok(context) => *out = context.write,
        // Generating into a growable buffer cannot run out of space; a frame that cannot be
        // generated at all (a value too long for its field) is dropped, with what was there.
        Err(e) => tracing::error!(error = ?e, "a frame could not be serialized"),
    }
}

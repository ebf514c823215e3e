//! The cause a carrot error keeps: the error of the library or system call under it.

use std::fmt;
use std::sync::Arc;

/// The underlying error of a carrot error: what lapin, SQLite, the operating system or tokio
/// reported. Shared (cloning it is cheap), so that one failure can be reported to every caller
/// it concerns.
///
/// [`Error::source`](std::error::Error::source) gives the underlying error itself, so it can be
/// downcast to its type:
///
/// ```
/// use std::error::Error as _;
///
/// # async fn demo() {
/// // Nothing listens on port 1 of the loopback interface.
/// let error = carrot::BrokerConnection::connect("amqp://guest:guest@127.0.0.1:1//").await.unwrap_err();
/// let mut cause = error.source();
/// while let Some(e) = cause {
///     if let Some(io) = e.downcast_ref::<std::io::Error>() {
///         assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
///     }
///     cause = e.source();
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync + 'static>);

impl Cause {
    /// Keeps `error` as a cause.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Cause(Arc::new(error))
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

/// The error itself (`Cause` does not implement `Error`: `Error::source` hands out what it
/// holds, so that it downcasts to its own type).
impl std::ops::Deref for Cause {
    type Target = dyn std::error::Error + Send + Sync + 'static;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

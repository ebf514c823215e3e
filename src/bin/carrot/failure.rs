//! How a command fails: a usage error (exit 2) or a broker / I/O error (exit 1).

use std::process::ExitCode;

/// Why a command did not succeed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The command line asks for something impossible: exit status 2.
    Usage(String),
    /// The broker refused or went away: exit status 1.
    Broker(carrot::Error),
    /// A broker error with what the user can do about it: exit status 1.
    Hinted(carrot::Error, &'static str),
    /// Reading stdin or writing stdout failed: exit status 1.
    Io(std::io::Error),
}

impl Failure {
    /// Prints the one-line message on stderr and gives the exit status.
    pub(crate) fn report(self) -> ExitCode {
        let (message, status) = match self {
            Failure::Usage(message) => (message, 2),
            Failure::Broker(e) => (e.to_string(), 1),
            Failure::Hinted(e, hint) => (format!("{e}; {hint}"), 1),
            // A closed pipe (`carrot consume | head`) is how the reader says it has enough.
            Failure::Io(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                return ExitCode::SUCCESS
            }
            Failure::Io(e) => (e.to_string(), 1),
        };
        eprintln!("carrot: {message}");
        ExitCode::from(status)
    }
}

impl Failure {
    /// Adds a hint to a `NotFound` error (any other error stays as it is).
    pub(crate) fn not_found_hint(e: carrot::Error, hint: &'static str) -> Self {
        match e {
            carrot::Error::NotFound(_) => Failure::Hinted(e, hint),
            e => e.into(),
        }
    }
}

impl From<carrot::Error> for Failure {
    fn from(e: carrot::Error) -> Self {
        // What the user typed was wrong: a usage error, not a broker failure.
        match e {
            carrot::Error::InvalidUrl { .. }
            | carrot::Error::InvalidArgument(_)
            | carrot::Error::UnknownSerializer(_) => Failure::Usage(e.to_string()),
            e => Failure::Broker(e),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Io(e)
    }
}

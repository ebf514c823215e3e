//! How the command line connects: the broker URL (and failover URLs), the retry policy,
//! recovery, heartbeats and timeouts. Every option works with every subcommand.

use std::time::Duration;

use clap::{Args, ValueEnum};

use carrot::{BrokerConnection, FailoverStrategy, RetryPolicy, Timeouts};

use crate::args;
use crate::failure::Failure;

/// `--failover-strategy`.
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub(crate) enum Strategy {
    /// In the order given, starting after the URL that failed.
    #[default]
    RoundRobin,
    /// In a new random order for each pass.
    Shuffle,
}

#[derive(Args, Debug)]
pub(crate) struct ConnectArgs {
    /// Broker URL: memory://[NAME], sqlite://PATH, amqp://USER:PASS@HOST:PORT/VHOST, amqps://...
    /// Several RabbitMQ URLs separated by ';' are failover alternatives.
    #[arg(long, env = "CARROT_URL", default_value = "memory://", global = true)]
    url: String,
    /// Another RabbitMQ URL to fail over to (repeatable), after those of --url.
    #[arg(long = "failover", value_name = "URL", global = true)]
    failover: Vec<String>,
    /// The order in which failover URLs are tried.
    #[arg(long, value_enum, default_value_t = Strategy::RoundRobin, global = true)]
    failover_strategy: Strategy,
    /// Retry policy: how many times to retry a lost or refused connection (default: no limit
    /// on the number, --retry-timeout bounds it).
    #[arg(long, value_name = "N", global = true)]
    max_retries: Option<u32>,
    /// Retry policy: seconds before the first retry.
    #[arg(long, value_name = "SECONDS", value_parser = args::seconds, default_value = "2", global = true)]
    interval_start: Duration,
    /// Retry policy: how many more seconds each following retry waits.
    #[arg(long, value_name = "SECONDS", value_parser = args::seconds, default_value = "2", global = true)]
    interval_step: Duration,
    /// Retry policy: the longest wait between two retries, in seconds.
    #[arg(long, value_name = "SECONDS", value_parser = args::seconds, default_value = "30", global = true)]
    interval_max: Duration,
    /// Retry policy: give up after retrying for this many seconds in all (0: never give up).
    #[arg(long, value_name = "SECONDS", value_parser = args::seconds, default_value = "60", global = true)]
    retry_timeout: Duration,
    /// Retry the first connection under the policy too (by default each URL is tried once, so
    /// that a wrong URL fails at once).
    #[arg(long, global = true)]
    retry_connect: bool,
    /// Do not recover a lost RabbitMQ connection: fail at once instead.
    #[arg(long, global = true)]
    no_recovery: bool,
    /// Heartbeat interval asked of RabbitMQ, in whole seconds (a silent broker is found within
    /// two intervals).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u16).range(1..), global = true)]
    heartbeat: Option<u16>,
    /// Seconds one connection attempt may take.
    #[arg(long, value_name = "SECONDS", value_parser = args::seconds, default_value = "10", global = true)]
    connect_timeout: Duration,
    /// Seconds a send may wait for its confirm, or for the broker to stop blocking publishing.
    #[arg(long, value_name = "SECONDS", value_parser = args::seconds, default_value = "30", global = true)]
    send_timeout: Duration,
    /// Seconds any other call on the broker (declare, cancel, close, ...) may take.
    #[arg(long, value_name = "SECONDS", value_parser = args::seconds, default_value = "30", global = true)]
    operation_timeout: Duration,
}

impl ConnectArgs {
    /// The broker URL as given (`carrot serve` serves it instead of connecting to it).
    #[cfg_attr(not(feature = "serve"), allow(dead_code))]
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The retry policy the options describe.
    fn policy(&self) -> RetryPolicy {
        RetryPolicy::default()
            .max_retries(self.max_retries)
            .interval_start(self.interval_start)
            .interval_step(self.interval_step)
            .interval_max(self.interval_max)
            .timeout((!self.retry_timeout.is_zero()).then_some(self.retry_timeout))
    }

    /// Connects as the options say.
    pub(crate) async fn connect(&self) -> Result<BrokerConnection, Failure> {
        let mut builder = BrokerConnection::builder()
            .url(&self.url)
            .urls(&self.failover)
            .failover_strategy(match self.failover_strategy {
                Strategy::RoundRobin => FailoverStrategy::RoundRobin,
                Strategy::Shuffle => FailoverStrategy::Shuffle,
            })
            .retry_policy(self.policy())
            .retry_on_connect(self.retry_connect)
            .recovery(!self.no_recovery)
            .timeouts(
                Timeouts::default()
                    .connect(self.connect_timeout)
                    .send(self.send_timeout)
                    .operation(self.operation_timeout),
            );
        if let Some(heartbeat) = self.heartbeat {
            builder = builder.heartbeat(Duration::from_secs(u64::from(heartbeat)));
        }
        Ok(builder.connect().await?)
    }
}

//! An RPC server and client: `rpc serve` answers requests on the queue `rpc.add`; `rpc call A B`
//! asks it for A + B and waits 5 s at most. With no argument, both in one process.
//!
//! ```text
//! cargo run --release --example rpc -- [URL]                 # server and client together
//! cargo run --release --example rpc -- amqp://localhost serve
//! cargo run --release --example rpc -- amqp://localhost call 2 3
//! ```
//!
//! On RabbitMQ the client receives replies by direct reply-to; the requests and replies are
//! those of kombu's RPC pattern, so a kombu client or server can take either side.

use std::time::Duration;

use carrot::{BrokerConnection, CancellationToken, RpcClient, RpcServer};

const QUEUE: &str = "rpc.add";

async fn serve(conn: &BrokerConnection, stop: CancellationToken) -> carrot::Result<u64> {
    let mut server = RpcServer::new(conn, QUEUE).await?;
    server
        .serve(
            |request| async move {
                let (a, b): (i64, i64) = request.decode()?;
                Ok::<_, carrot::BoxError>(a + b)
            },
            stop,
        )
        .await
}

async fn call(conn: &BrokerConnection, a: i64, b: i64) -> carrot::Result<i64> {
    let client = RpcClient::new(conn).await?;
    client
        .call(QUEUE, &(a, b), Duration::from_secs(5))
        .await?
        .decode()
}

#[tokio::main]
async fn main() -> Result<(), carrot::BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = args.first().map_or("memory://", String::as_str);
    let conn = BrokerConnection::connect(url).await?;
    match args.get(1).map(String::as_str) {
        Some("serve") => {
            let stop = CancellationToken::new();
            let on_signal = stop.clone();
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                on_signal.cancel();
            });
            println!("answered {} requests", serve(&conn, stop).await?);
        }
        Some("call") => {
            let a = args.get(2).ok_or("call A B")?.parse()?;
            let b = args.get(3).ok_or("call A B")?.parse()?;
            println!("{a} + {b} = {}", call(&conn, a, b).await?);
        }
        _ => {
            let stop = CancellationToken::new();
            let server = tokio::spawn({
                let (conn, stop) = (conn.clone(), stop.clone());
                async move { serve(&conn, stop).await }
            });
            // The server declares its queue first.
            while conn.queue_info(QUEUE).await.is_err() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            println!("2 + 3 = {}", call(&conn, 2, 3).await?);
            stop.cancel();
            server.await??;
        }
    }
    Ok(())
}

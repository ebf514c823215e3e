//! carrot's side of `bench/serializers.py`: encode + decode throughput of one serializer.
//!
//! Reads a JSON file (the data both sides of the benchmark use), makes it a [`carrot::Value`],
//! then encodes it with `Registry::encode` and decodes the body back into a `Value` with
//! `Registry::decode`, N times, and prints one JSON line:
//! `{"serializer": "json", "iterations": N, "seconds": ..., "ops_per_s": ..., "body_bytes": ...,
//! "content_type": ..., "content_encoding": ...}`; one op is one encode plus one decode.
//!
//! ```text
//! cargo build --release --example serializer_bench
//! target/release/examples/serializer_bench --serializer msgpack --iterations 100000 --data data.json
//! ```
//!
//! Before timing, it checks that the data decodes back unchanged (exit status 1 otherwise).

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use carrot::serialization::Registry;
use carrot::Value;

const USAGE: &str =
    "usage: serializer_bench --serializer json|msgpack|yaml|pickle --iterations N --data FILE.json";

struct Args {
    serializer: String,
    iterations: u64,
    data: String,
}

fn parse_args() -> Result<Args, String> {
    let mut serializer = None;
    let mut iterations = None;
    let mut data = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--serializer" => serializer = Some(value()?),
            "--iterations" => {
                let text = value()?;
                let n = text
                    .parse::<u64>()
                    .map_err(|e| format!("--iterations {text}: {e}"))?;
                iterations = Some(n.max(1));
            }
            "--data" => data = Some(value()?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        serializer: serializer.ok_or("--serializer is required")?,
        iterations: iterations.ok_or("--iterations is required")?,
        data: data.ok_or("--data is required")?,
    })
}

/// One encode and one decode: the op the benchmark counts.
fn round_trip(
    registry: &Registry,
    serializer: &str,
    value: &Value,
) -> carrot::Result<(Value, usize)> {
    let encoded = registry.encode(serializer, value)?;
    let back: Value = registry.decode(
        Some(&encoded.content_type),
        Some(&encoded.content_encoding),
        &encoded.body,
    )?;
    Ok((back, encoded.body.len()))
}

fn run(args: &Args) -> Result<serde_json::Value, String> {
    let text =
        std::fs::read_to_string(&args.data).map_err(|e| format!("read {}: {e}", args.data))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", args.data))?;
    let value = Value::from(json);
    let registry = Registry::default();
    let serializer = args.serializer.as_str();

    let encoded = registry
        .encode(serializer, &value)
        .map_err(|e| format!("encode with {serializer}: {e}"))?;
    let (back, body_bytes) =
        round_trip(&registry, serializer, &value).map_err(|e| format!("{serializer}: {e}"))?;
    if back != value {
        return Err(format!(
            "{serializer} does not give the data back unchanged: {back:?}"
        ));
    }

    let start = Instant::now();
    for _ in 0..args.iterations {
        let result = round_trip(&registry, black_box(serializer), black_box(&value));
        black_box(result.map_err(|e| format!("{serializer}: {e}"))?);
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(serde_json::json!({
        "serializer": serializer,
        "iterations": args.iterations,
        "seconds": seconds,
        "ops_per_s": args.iterations as f64 / seconds,
        "body_bytes": body_bytes,
        "content_type": &*encoded.content_type,
        "content_encoding": &*encoded.content_encoding,
    }))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(problem) => {
            if !problem.is_empty() {
                eprintln!("serializer_bench: {problem}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(result) => {
            println!("{result}");
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("serializer_bench: {problem}");
            ExitCode::FAILURE
        }
    }
}

#!/usr/bin/env python3
"""Serializer throughput, carrot against kombu: encode + decode of a typical ~1 KiB dict.

The dict (DATA below: a task-like message with strings, ints, floats, None, a bool, lists
and nested dicts) is written to a JSON file that both sides read, so that they serialize the
same data. For each serializer (json, msgpack, yaml, pickle), one op is:

- carrot: `Registry::default().encode(name, &value)` then
  `.decode::<carrot::Value>(Some(content_type), Some(content_encoding), &body)`, timed inside
  examples/serializer_bench.rs (release build) over N ops;
- kombu: `kombu.serialization.dumps(data, serializer=name)` then
  `loads(body, content_type, content_encoding, accept=[content_type])`, timed in this process
  over N ops. kombu's json and yaml `dumps` return str (its transport encodes it to UTF-8
  later, outside the timing); msgpack and pickle return bytes.

Each side first decodes its own body once and checks it equals the data. N is calibrated per
side and serializer so that a run takes about --seconds (from a run of at least 0.2 s); then
both sides run alternately, --rounds rounds (carrot first in odd rounds, kombu first in even
ones), and each figure is the median of the rounds (min - max in brackets). Prints a
markdown section for BENCHMARKS.md on stdout (this script does not edit it); progress goes
to stderr.

    python3 bench/serializers.py [--rounds 3] [--seconds 1.0] [--serializers json,msgpack,yaml,pickle]

Builds with `cargo build --release --example serializer_bench` (CARGO_TARGET_DIR is honoured).
Needs kombu, msgpack and PyYAML.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import kombu
import msgpack
import yaml
from kombu.serialization import dumps, loads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERIALIZERS = ["json", "msgpack", "yaml", "pickle"]
CALIBRATION_OPS = 100
CALIBRATION_S = 0.2

# A typical message: a task with its arguments, a user record and a few line items.
DATA = {
    "id": "3b6f1c9e-8a5d-4f3e-9c1a-2d7e5b4a6f80",
    "task": "proj.tasks.import_feed",
    "args": [42, "https://example.com/feeds/rss.xml"],
    "kwargs": {"retries": 3, "timeout": 30.5, "force": False, "tags": ["news", "tech", "rust", "python"]},
    "eta": None,
    "priority": 5,
    "user": {
        "id": 1234567,
        "name": "Zoë Müller",
        "email": "zoe@example.com",
        "roles": ["admin", "editor"],
        "score": 98.6,
    },
    "items": [{"sku": f"SKU-{i:04d}", "qty": i + 1, "price": round(9.99 + 1.25 * i, 2)} for i in range(8)],
    "headers": {"origin": "gen4242@worker-7.example.com", "lang": "py", "retries": 0, "ratio": 0.25},
    "description": "Imports the feed, deduplicates its entries and stores the new ones; retried with backoff.",
    "created": 1700000000.123,
}


def run(cmd, **kwargs):
    return subprocess.run(cmd, cwd=ROOT, check=True, text=True, stdout=subprocess.PIPE, **kwargs).stdout


def build():
    """Builds the example in release; returns its executable (cargo's JSON messages name it)."""
    out = run(["cargo", "build", "--release", "--example", "serializer_bench", "--message-format", "json"])
    for line in out.splitlines():
        if not line.startswith("{"):
            continue
        msg = json.loads(line)
        if (msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "serializer_bench"
                and msg.get("executable")):
            return msg["executable"]
    sys.exit("serializers.py: cargo named no executable for the example serializer_bench")


def carrot(executable, serializer, iterations, data_path):
    out = run([executable, "--serializer", serializer, "--iterations", str(iterations), "--data", data_path])
    return json.loads(out)


def kombu_run(data, serializer, iterations):
    content_type, content_encoding, body = dumps(data, serializer=serializer)
    accept = [content_type]
    if loads(body, content_type, content_encoding, accept=accept) != data:
        sys.exit(f"serializers.py: kombu's {serializer} does not give the data back unchanged")
    start = time.perf_counter()
    for _ in range(iterations):
        ct, enc, body = dumps(data, serializer=serializer)
        loads(body, ct, enc, accept=accept)
    seconds = time.perf_counter() - start
    size = len(body.encode("utf-8") if isinstance(body, str) else body)
    return {"serializer": serializer, "iterations": iterations, "seconds": seconds,
            "ops_per_s": iterations / seconds, "body_bytes": size, "content_type": content_type}


def calibrate(measure, seconds):
    """The number of ops that takes about `seconds`: `measure(n)` with n growing until a run
    lasts CALIBRATION_S (warm by then), scaled."""
    n = CALIBRATION_OPS
    while True:
        result = measure(n)
        if result["seconds"] >= CALIBRATION_S or n >= 10**8:
            return max(CALIBRATION_OPS, int(result["ops_per_s"] * seconds))
        n *= 4


def figure(rates):
    median = statistics.median(rates)
    if len(rates) == 1:
        return f"{median:,.0f}"
    return f"{median:,.0f} [{min(rates):,.0f} - {max(rates):,.0f}]"


def loadavg():
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        rustc = run(["rustc", "--version"]).strip()
    except (OSError, subprocess.CalledProcessError):
        rustc = "rustc ?"
    return (f"{os.cpu_count()} cores, {cpu}; {rustc}; kombu {kombu.__version__}, msgpack "
            f"{'.'.join(map(str, msgpack.version))}, PyYAML {yaml.__version__} on Python "
            f"{platform.python_version()}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0, help="about how long each timed run takes")
    parser.add_argument("--serializers", default=",".join(SERIALIZERS))
    args = parser.parse_args()
    serializers = [s for s in args.serializers.split(",") if s]

    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = loadavg()
    print("building examples/serializer_bench.rs (release)...", file=sys.stderr)
    executable = build()
    with tempfile.TemporaryDirectory(prefix="carrot-serializers-") as tmp:
        data_path = os.path.join(tmp, "data.json")
        with open(data_path, "w", encoding="utf-8") as f:
            json.dump(DATA, f, ensure_ascii=False)
        with open(data_path, encoding="utf-8") as f:
            data = json.load(f)  # exactly what the example reads
        json_size = len(json.dumps(data).encode("utf-8"))

        iterations = {}
        for serializer in serializers:
            c = calibrate(lambda n: carrot(executable, serializer, n, data_path), args.seconds)
            k = calibrate(lambda n: kombu_run(data, serializer, n), args.seconds)
            iterations[serializer] = (c, k)

        rates = {s: {"carrot": [], "kombu": []} for s in serializers}
        sizes = {}
        for round_ in range(1, args.rounds + 1):
            for serializer in serializers:
                n_carrot, n_kombu = iterations[serializer]
                sides = [("carrot", lambda: carrot(executable, serializer, n_carrot, data_path)),
                         ("kombu", lambda: kombu_run(data, serializer, n_kombu))]
                if round_ % 2 == 0:
                    sides.reverse()
                for side, measure in sides:
                    result = measure()
                    rates[serializer][side].append(result["ops_per_s"])
                    sizes.setdefault(serializer, {})[side] = result["body_bytes"]
                    print(f"round {round_} {serializer:8} {side:6} {result['ops_per_s']:>12,.0f} ops/s",
                          file=sys.stderr)

    example = os.path.relpath(executable, ROOT) if executable.startswith(ROOT) else executable
    lines = [
        "## Serializers: encode + decode of a ~1 KiB dict",
        "",
        f"Written by `bench/serializers.py`: one op is one encode and one decode of the same dict "
        f"({json_size} bytes as JSON: strings, ints, floats, None, a bool, lists, nested dicts). carrot: "
        "`Registry::encode` + `Registry::decode::<carrot::Value>` in `examples/serializer_bench.rs` "
        "(release); kombu: `kombu.serialization.dumps` + `loads` (accept = the content type). "
        f"Median of {args.rounds} rounds, both sides alternately (min - max in brackets); each run "
        f"takes about {args.seconds:g} s.",
        "",
        f"- {machine()}",
        f"- {started:%Y-%m-%d %H:%M} UTC; load average (1, 5, 15 min) {load_start} at the start, "
        f"{loadavg()} at the end",
        "",
        "| serializer | carrot ops/s | kombu ops/s | carrot / kombu | command |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for serializer in serializers:
        c, k = rates[serializer]["carrot"], rates[serializer]["kombu"]
        ratio = statistics.median(c) / statistics.median(k)
        n_carrot, n_kombu = iterations[serializer]
        command = (f"`{example} --serializer {serializer} --iterations {n_carrot} --data data.json`; "
                   f"`dumps(data, serializer=\"{serializer}\")` + `loads` x {n_kombu}")
        lines.append(f"| `{serializer}` | {figure(c)} | {figure(k)} | {ratio:.1f}x | {command} |")
    lines += [
        "",
        "Body sizes (bytes, carrot / kombu): "
        + ", ".join(f"{s} {sizes[s]['carrot']} / {sizes[s]['kombu']}" for s in serializers)
        + ". kombu's json writes `, ` and `: ` separators and escapes non-ASCII text as `\\uXXXX`; "
        "kombu pickles with protocol 4, carrot with protocol 3.",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()

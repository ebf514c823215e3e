#!/usr/bin/env python3
"""The peer of benches/memory.rs and benches/memory_hold.rs: kombu's ``memory://`` transport.

Same workloads as the Rust benches: 100-byte bodies sent as bytes (``application/data``,
``binary``), persistent, through one direct exchange to one queue.

- publish: ``Producer.publish`` of N messages;
- consume_get: ``Queue.get`` (basic_get) + ``Message.ack`` of N waiting messages;
- consume_get_no_ack: ``Queue.get(no_ack=True)`` of N waiting messages;
- consume_drain: ``Consumer`` with a callback that acks, driven by ``Connection.drain_events``;
- publish_consume_get / publish_consume_drain: publish N, then consume them; the rate is
  N / (publish time + consume time) of one round;
- hold: peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) of a fresh process that queues
  HOLD messages (1,000,000 by default); run in a subprocess so that the throughput rounds do not
  count. If publishing them would take longer than HOLD_BUDGET_S, fewer are queued and the
  figure is scaled linearly to 1,000,000 (the JSON says so).

Each throughput figure is the median of ROUNDS rounds. Prints one JSON object on stdout.

Usage: kombu_memory.py [--n 20000] [--rounds 5] [--hold 1000000] [--no-hold]
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import kombu
from kombu import Connection, Consumer, Exchange, Producer, Queue

BODY_LEN = 100
HOLD_BUDGET_S = 120.0


def setup(name):
    conn = Connection(f"memory://{name}")
    channel = conn.channel()
    exchange = Exchange("bench", type="direct", durable=True, delivery_mode=2)
    queue = Queue("bench", exchange=exchange, routing_key="bench", durable=True)
    bound = queue(channel)
    bound.declare()
    producer = Producer(channel, exchange=exchange, routing_key="bench", auto_declare=True)
    return conn, channel, bound, producer


def publish(producer, n, body):
    pub = producer.publish
    for _ in range(n):
        pub(body, content_type="application/data", content_encoding="binary")


def consume_get(bound, n):
    get = bound.get
    for _ in range(n):
        message = get(no_ack=False)
        assert message is not None and len(message.body) == BODY_LEN
        message.ack()


def consume_get_no_ack(bound, n):
    get = bound.get
    for _ in range(n):
        message = get(no_ack=True)
        assert message is not None and len(message.body) == BODY_LEN


def consume_drain(conn, channel, bound, n):
    received = 0

    def on_message(body, message):
        nonlocal received
        received += 1
        message.ack()

    consumer = Consumer(channel, queues=[bound], callbacks=[on_message], accept=["application/data"])
    consumer.qos(prefetch_count=0)
    with consumer:
        while received < n:
            conn.drain_events(timeout=5)
    assert received == n


def timed(fn, *args):
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def throughput(n, rounds):
    body = bytes(b"a"[0] + i % 26 for i in range(BODY_LEN))
    keys = ("publish", "consume_get", "consume_get_no_ack", "consume_drain", "publish_consume_get", "publish_consume_drain")
    results = {key: [] for key in keys}
    conn, channel, bound, producer = setup("bench")
    for _ in range(rounds):
        t_pub = timed(publish, producer, n, body)
        t_get = timed(consume_get, bound, n)
        t_pub2 = timed(publish, producer, n, body)
        t_drain = timed(consume_drain, conn, channel, bound, n)
        publish(producer, n, body)
        t_get_no_ack = timed(consume_get_no_ack, bound, n)
        results["publish"].append(n / t_pub)
        results["consume_get"].append(n / t_get)
        results["consume_drain"].append(n / t_drain)
        results["consume_get_no_ack"].append(n / t_get_no_ack)
        results["publish_consume_get"].append(n / (t_pub + t_get))
        results["publish_consume_drain"].append(n / (t_pub2 + t_drain))
    conn.release()
    return {key: statistics.median(rates) for key, rates in results.items()}, results


def hold(count):
    """Runs in a child process: queue `count` messages, report peak RSS."""
    body = bytearray(BODY_LEN)
    conn, channel, bound, producer = setup("hold")
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pub = producer.publish
    start = time.perf_counter()
    for i in range(count):
        body[:8] = i.to_bytes(8, "little")
        pub(bytes(body), content_type="application/data", content_encoding="binary")
    elapsed = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queued = bound.queue_declare(passive=True).message_count
    assert queued == count, (queued, count)
    message = bound.get(no_ack=False)
    assert int.from_bytes(message.body[:8], "little") == 0
    message.ack()
    return {
        "messages": count,
        "peak_rss_mb": peak_kb * 1024 / 1e6,  # ru_maxrss is in KiB on Linux; MB = 10^6 bytes
        "baseline_rss_mb": baseline_kb * 1024 / 1e6,
        "publish_s": elapsed,
    }


def measure_hold(target):
    """Probes the publish rate, then queues as many as fit in the budget (at most `target`)."""
    probe = subprocess.run([sys.executable, __file__, "--hold-child", "50000"], capture_output=True, text=True, check=True)
    probe = json.loads(probe.stdout)
    rate = probe["messages"] / probe["publish_s"]
    count = target if target / rate <= HOLD_BUDGET_S else int(rate * HOLD_BUDGET_S) // 10_000 * 10_000
    child = subprocess.run([sys.executable, __file__, "--hold-child", str(count)], capture_output=True, text=True, check=True)
    result = json.loads(child.stdout)
    result["target_messages"] = target
    result["scaled"] = count != target
    per_message = (result["peak_rss_mb"] - result["baseline_rss_mb"]) / count
    result["peak_rss_mb_for_target"] = result["baseline_rss_mb"] + per_message * target
    result["bytes_per_message"] = per_message * 1e6
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="messages per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hold", type=int, default=1_000_000, help="messages to hold for the RSS figure")
    parser.add_argument("--no-hold", action="store_true")
    parser.add_argument("--hold-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hold_child is not None:
        print(json.dumps(hold(args.hold_child)))
        return
    medians, rounds = throughput(args.n, args.rounds)
    out = {
        "kombu": kombu.__version__,
        "python": sys.version.split()[0],
        "n": args.n,
        "rounds": args.rounds,
        "body_bytes": BODY_LEN,
        "msgs_per_s": medians,
        "all_rounds": rounds,
    }
    if not args.no_hold:
        out["hold"] = measure_hold(args.hold)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

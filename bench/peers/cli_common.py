"""What the Python peers of `carrot bench` share: its options, its workload and its JSON.

`carrot bench` (src/bin/carrot/bench.rs) runs P producers and C consumers at once on one fresh
queue; bench/peers/pika_cli.py and bench/peers/kombu_cli.py run the same workload with their
library, with the same options and the same JSON keys, so that bench/cli_run.sh can put them
side by side (bench/peers/lapin_peer.rs is the raw-lapin peer). This module has the driver;
each peer supplies a `Client` (see below) for its library.

The workload, as `carrot bench` does it:
- one fresh queue (durable with --persistent), deleted at the end;
- C consumers, each with a connection and channel of its own, `basic.qos(prefetch)`,
  subscribed before the clock starts, each delivery acked; each runs on a thread;
- P producers, each with a connection and channel of its own (confirm mode with --confirm:
  each publish waits for its confirm), sharing the N messages; each runs on a thread. Default
  exchange, routing key = the queue, `application/data`, `binary`, delivery mode 1 or 2;
- each body carries its send time (u64 LE, nanoseconds since the start) in its first 8 bytes;
  consumers record send-to-delivery latency in microseconds;
- published/s = N / time until the last publish returned, consumed/s = N / time until the last
  ack; latency p50/p99/max in ms (nearest rank, as hdrhistogram's `value_at_quantile`); peak
  RSS = `VmHWM` of /proc/self/status in MB (MiB, as carrot computes it).

Neither pika nor kombu connections may be shared between threads, so every producer and
consumer has a connection of its own (carrot and lapin use one connection with a channel per
producer and consumer). The threads share one interpreter, so they take turns on the GIL.
"""

import argparse
import json
import math
import os
import sys
import threading
import time

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
CONTENT_TYPE = "application/data"
CONTENT_ENCODING = "binary"


class Client:
    """What a peer implements for its library.

    `producer` and `consumer` are called on the main thread before the clock starts; the
    objects they return are then used by one thread each, and closed by it.
    """

    name = "peer"

    def declare(self, queue, durable):
        raise NotImplementedError

    def delete(self, queue):
        raise NotImplementedError

    def producer(self, queue, persistent, confirm):
        """An object with `send(body)` (returns once the library has it; with confirm, once
        the broker confirmed) and `close()`."""
        raise NotImplementedError

    def consumer(self, queue, prefetch):
        """An object subscribed to `queue` (qos `prefetch`, manual acks), with:
        - `run(handle, acked, done)`, on the consumer's thread: for each delivery, calls
          `handle(body)`, acks it, then calls `acked()`; returns once `stop()` was called or
          the event `done` is set (noticed within a fraction of a second);
        - `stop()`, callable from any thread, before, during or after `run`;
        - `close()`, on the consumer's thread after `run`."""
        raise NotImplementedError

    def close(self):
        pass


def arguments(description, default_url=None):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--url", default=os.environ.get("CARROT_URL") or default_url or DEFAULT_URL)
    p.add_argument("--messages", type=int, default=100_000, help="messages to send in all")
    p.add_argument("--size", type=int, default=100, help="body size in bytes (at least 8)")
    p.add_argument("--producers", type=int, default=1, help="publishing threads")
    p.add_argument("--consumers", type=int, default=1, help="consuming threads")
    p.add_argument("--persistent", action="store_true",
                   help="persistent messages on a durable queue")
    p.add_argument("--confirm", action="store_true", help="publisher confirms, one at a time")
    p.add_argument("--prefetch", type=int, default=1000,
                   help="unacknowledged deliveries per consumer (0: no limit)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    args = p.parse_args()
    if args.size < 8:
        p.error("--size must be at least 8 bytes: each body carries its send time")
    if args.producers < 1 or args.consumers < 1:
        p.error("--producers and --consumers must be at least 1")
    return args


def redact(url):
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        userinfo, host = rest.rsplit("@", 1)
        return f"{scheme}://{userinfo.split(':')[0]}:***@{host}"
    return url


def peak_rss_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def quantile(sorted_values, q):
    """The nearest-rank quantile, as hdrhistogram's `value_at_quantile` (to its precision)."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class Tally:
    """Counts acks across consumer threads; sets `done` at the N-th."""

    def __init__(self, total):
        self.total = total
        self.count = 0
        self.lock = threading.Lock()
        self.done = threading.Event()
        if total == 0:
            self.done.set()

    def one(self):
        with self.lock:
            self.count += 1
            reached = self.count >= self.total
        if reached:
            self.done.set()
        return reached


def measure(client, queue, args):
    tally = Tally(args.messages)
    failures = []
    consumers = []
    for _ in range(args.consumers):
        state = {"latency": [], "last": None}
        consumers.append((client.consumer(queue, args.prefetch), state))
    producers = [client.producer(queue, args.persistent, args.confirm)
                 for _ in range(args.producers)]
    share, extra = divmod(args.messages, args.producers)
    pad = b"x" * (args.size - 8)

    origin = time.perf_counter_ns()
    finished = []

    def consume(consumer, state):
        latency = state["latency"]
        record = latency.append
        clock = time.perf_counter_ns

        def handle(body):
            sent = int.from_bytes(body[:8], "little")
            record(max(1, (clock() - origin - sent) // 1000))

        def acked():
            state["last"] = clock()
            if tally.one():
                for other, _ in consumers:
                    other.stop()

        try:
            consumer.run(handle, acked, tally.done)
            consumer.close()
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            failures.append(e)
            tally.done.set()
            for other, _ in consumers:
                other.stop()

    def produce(producer, count):
        clock = time.perf_counter_ns
        send = producer.send
        try:
            for _ in range(count):
                send((clock() - origin).to_bytes(8, "little") + pad)
            finished.append(clock())
            producer.close()
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            failures.append(e)
            tally.done.set()
            for other, _ in consumers:
                other.stop()

    threads = [threading.Thread(target=consume, args=c) for c in consumers]
    threads += [threading.Thread(target=produce, args=(p, share + (1 if i < extra else 0)))
                for i, p in enumerate(producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]
    if tally.count < args.messages:
        raise RuntimeError(f"{tally.count} of {args.messages} messages consumed")
    latency = sorted(v for _, s in consumers for v in s["latency"])
    last_consumed = max((s["last"] for _, s in consumers if s["last"] is not None), default=origin)
    return {
        "published": (max(finished, default=origin) - origin) / 1e9,
        "consumed": (last_consumed - origin) / 1e9,
        "latency": latency,
    }


def main(client, args):
    nanos = time.time_ns() % 1_000_000_000
    queue = f"carrot-bench-{client.name}-{os.getpid()}-{nanos:x}"
    client.declare(queue, durable=args.persistent)
    try:
        outcome = measure(client, queue, args)
    finally:
        # The queue goes whatever happened, so that a failed run leaves nothing behind.
        client.delete(queue)
        client.close()
    rate = lambda s: args.messages / max(s, 1e-9)  # noqa: E731
    lat = outcome["latency"]
    ms = lambda q: quantile(lat, q) / 1000  # noqa: E731
    peak = peak_rss_mb()
    if args.json:
        print(json.dumps({
            "url": redact(args.url),
            "messages": args.messages,
            "size": args.size,
            "producers": args.producers,
            "consumers": args.consumers,
            "persistent": args.persistent,
            "confirm": args.confirm,
            "prefetch": args.prefetch,
            "published_per_s": round(rate(outcome["published"])),
            "consumed_per_s": round(rate(outcome["consumed"])),
            "elapsed_s": outcome["consumed"],
            "latency_ms": {"p50": ms(0.5), "p99": ms(0.99), "max": (lat[-1] if lat else 0) / 1000},
            "peak_rss_mb": peak,
        }))
        return
    print(f"broker       {redact(args.url)} ({client.name})")
    print(f"workload     {args.messages} x {args.size} bytes, {args.producers} producer(s), "
          f"{args.consumers} consumer(s), prefetch {args.prefetch}, "
          f"{'persistent' if args.persistent else 'transient'}{', confirms' if args.confirm else ''}")
    print(f"published    {rate(outcome['published']):>12.0f} msg/s  ({outcome['published']:.2f} s)")
    print(f"consumed     {rate(outcome['consumed']):>12.0f} msg/s  "
          f"({outcome['consumed']:.2f} s, acknowledged)")
    print(f"latency      p50 {ms(0.5):.3f} ms   p99 {ms(0.99):.3f} ms   "
          f"max {(lat[-1] if lat else 0) / 1000:.3f} ms")
    print(f"peak RSS     {peak:>12.1f} MB" if peak is not None else
          "peak RSS     unknown (no /proc/self/status)")


def run(make_client, description, default_url=None):
    args = arguments(description, default_url)
    try:
        client = make_client(args.url)
        main(client, args)
    except KeyboardInterrupt:
        sys.exit(130)

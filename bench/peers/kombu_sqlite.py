#!/usr/bin/env python3
"""kombu's SQLAlchemy transport on a SQLite file, on the workload of `carrot bench --persistent`
(same options, same JSON keys), for bench/sqlite_run.sh.

    python3 bench/peers/kombu_sqlite.py --url sqla+sqlite:////tmp/kombu-bench.db \
        --messages 3000 --producers 2 --consumers 2 --json

The workload, as `carrot bench` (src/bin/carrot/bench.rs) runs it:
- one fresh queue, declared before the clock starts and deleted at the end;
- C consumers, each a thread with a `kombu.Connection` of its own (kombu connections are not
  thread-safe), a `Consumer` subscribed before the clock starts (`qos(prefetch)`), a callback
  that records the latency and calls `message.ack()`, driven by `drain_events(timeout=0.1)`
  until the N-th message is acked;
- P producers, each a thread with a connection of its own and a `Producer` on the default
  exchange, sharing the N messages: `Producer.publish` of each body as it is
  (`application/data`, `binary`: no serializer runs), routing key = the queue, delivery mode 2;
- each body is `--size` bytes and carries its send time (u64 LE, nanoseconds since the start)
  in its first 8 bytes; latency is send-to-callback, in microseconds; p50/p99/max by nearest
  rank (as hdrhistogram's `value_at_quantile`);
- published/s = N / time until the last publish returned; consumed/s = N / time until the
  last ack; peak RSS = `VmHWM` of /proc/self/status in MiB (as carrot computes it).

What kombu's SQLAlchemy transport does (kombu/transport/sqlalchemy): every publish is one
INSERT and one commit; every delivery is one `BEGIN IMMEDIATE` transaction (SELECT the oldest
visible row, UPDATE it to invisible, COMMIT), one message per transaction; an ack changes
nothing in the database (the row stays, invisible). The delivery mode is not stored: every
message is in the file. It keeps SQLite's defaults: rollback journal (`journal_mode=DELETE`),
`synchronous=FULL`, so each commit is fsynced. Consumers poll: when the queue is empty, a
consumer sleeps the transport's `polling_interval` (kombu's default is 1 s) before the next
`BEGIN IMMEDIATE`; this peer sets it to `--polling-interval` (default 0.001 s; each empty
poll takes the database's write lock, so polling much faster slows the producers down).
Transport options: `connect_args={"timeout": 60}` (SQLite's busy timeout; pysqlite's default,
5 s, makes a publish fail with "database is locked" when 12 threads contend for the lock).
`--wal` sets `journal_mode=WAL` and `synchronous=NORMAL` on every connection, the durability
level of carrot's sqlite:// (no fsync per commit; not kombu's default, for comparison).

The threads share one interpreter, so they take turns on the GIL (pysqlite releases it while
SQLite works). Needs kombu and sqlalchemy (`pip install kombu sqlalchemy`).
"""

import argparse
import json
import math
import os
import socket
import sys
import threading
import time

try:
    import sqlalchemy
    from kombu import Connection, Consumer, Exchange, Producer, Queue
except ImportError as e:  # pragma: no cover
    sys.exit(f"kombu_sqlite.py needs kombu and sqlalchemy ({e}): "
             "python3 -m pip install kombu sqlalchemy")

CONTENT_TYPE = "application/data"
CONTENT_ENCODING = "binary"
DEFAULT_EXCHANGE = Exchange("")


def arguments():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default=f"sqla+sqlite:////tmp/kombu-bench-{os.getpid()}.db",
                   help="sqla+sqlite:////ABSOLUTE/PATH.db")
    p.add_argument("--messages", type=int, default=3000, help="messages to send in all")
    p.add_argument("--size", type=int, default=100, help="body size in bytes (at least 8)")
    p.add_argument("--producers", type=int, default=1, help="publishing threads")
    p.add_argument("--consumers", type=int, default=1, help="consuming threads")
    p.add_argument("--persistent", action="store_true",
                   help="delivery mode 2 (kombu's SQL transport stores every message anyway)")
    p.add_argument("--prefetch", type=int, default=1000,
                   help="unacknowledged deliveries per consumer (0: no limit)")
    p.add_argument("--polling-interval", type=float, default=0.001,
                   help="seconds a consumer sleeps when the queue is empty (kombu's default: 1)")
    p.add_argument("--wal", action="store_true",
                   help="journal_mode=WAL and synchronous=NORMAL on every connection (carrot's "
                        "durability level) instead of SQLite's defaults (DELETE, FULL)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    args = p.parse_args()
    if args.size < 8:
        p.error("--size must be at least 8 bytes: each body carries its send time")
    if args.producers < 1 or args.consumers < 1:
        p.error("--producers and --consumers must be at least 1")
    if not args.url.startswith(("sqla+sqlite:", "sqlalchemy+sqlite:")):
        p.error("--url must be sqla+sqlite:////PATH")
    return args


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
    """The nearest-rank quantile."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def connection(args):
    if args.wal and not getattr(connection, "hooked", False):
        # Every pysqlite connection the engine opens, as carrot's sqlite:// opens its file.
        def on_connect(dbapi_conn, _record):
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")
        sqlalchemy.event.listen(sqlalchemy.engine.Engine, "connect", on_connect)
        connection.hooked = True
    conn = Connection(args.url, transport_options={"connect_args": {"timeout": 60}})
    conn.connect()
    # Not through transport_options: this transport hands them all to create_engine().
    conn.transport.polling_interval = args.polling_interval
    return conn


def main():
    args = arguments()
    queue = f"carrot-bench-{os.getpid()}-{time.time_ns() & 0xffffffff:x}"
    mode = 2 if args.persistent else 1

    admin = connection(args)
    channel = admin.channel()
    channel.queue_declare(queue=queue, durable=args.persistent, auto_delete=False)

    lock = threading.Lock()
    state = {"acked": 0, "last_ack": None}
    done = threading.Event()
    start = threading.Event()
    failures = []
    if args.messages == 0:
        done.set()

    def fail(e):
        with lock:
            failures.append(e)
        done.set()

    origin = [0]  # perf_counter_ns at the start, set before `start` is

    # Consumers: connected and subscribed before the clock starts.
    consumers = []
    for _ in range(args.consumers):
        conn = connection(args)
        latency = []

        def on_message(body, message, latency=latency):
            now = time.perf_counter_ns()
            sent = int.from_bytes(message.body[:8], "little")
            latency.append(max(1, (now - origin[0] - sent) // 1000))
            message.ack()
            with lock:
                state["acked"] += 1
                state["last_ack"] = now
                reached = state["acked"] >= args.messages
            if reached:
                done.set()

        q = Queue(queue, exchange=DEFAULT_EXCHANGE, routing_key=queue, no_declare=True)
        consumer = Consumer(conn.channel(), queues=[q], callbacks=[on_message],
                            accept=[CONTENT_TYPE], auto_declare=False)
        consumer.qos(prefetch_count=args.prefetch)
        consumer.consume()
        consumers.append((conn, consumer, latency))

    producers = []
    share, extra = divmod(args.messages, args.producers)
    for i in range(args.producers):
        conn = connection(args)
        producer = Producer(conn.channel(), exchange=DEFAULT_EXCHANGE, routing_key=queue)
        producers.append((conn, producer, share + (1 if i < extra else 0), {}))

    def consume(conn):
        start.wait()
        try:
            while not done.is_set():
                try:
                    conn.drain_events(timeout=0.1)
                except socket.timeout:
                    pass
        except Exception as e:  # noqa: BLE001
            fail(e)

    def produce(producer, count, result):
        start.wait()
        try:
            body = bytearray(b"x" * args.size)
            for _ in range(count):
                body[:8] = (time.perf_counter_ns() - origin[0]).to_bytes(8, "little")
                producer.publish(bytes(body), routing_key=queue, content_type=CONTENT_TYPE,
                                 content_encoding=CONTENT_ENCODING, delivery_mode=mode)
            result["finished"] = time.perf_counter_ns()
        except Exception as e:  # noqa: BLE001
            fail(e)

    threads = [threading.Thread(target=consume, args=(c[0],)) for c in consumers]
    threads += [threading.Thread(target=produce, args=(p[1], p[2], p[3])) for p in producers]
    for t in threads:
        t.start()
    origin[0] = time.perf_counter_ns()
    start.set()
    for t in threads:
        t.join()

    for conn, consumer, _ in consumers:
        consumer.cancel()
        conn.release()
    for conn, *_ in producers:
        conn.release()
    channel.queue_delete(queue=queue)
    admin.release()
    if failures:
        sys.exit(f"kombu_sqlite.py: {failures[0]!r}")

    published_ns = max((p[3]["finished"] for p in producers), default=origin[0]) - origin[0]
    consumed_ns = (state["last_ack"] or origin[0]) - origin[0]
    rate = lambda ns: round(args.messages / max(ns / 1e9, 1e-9))  # noqa: E731
    latency = sorted(v for c in consumers for v in c[2])
    ms = lambda q: quantile(latency, q) / 1000  # noqa: E731
    result = {
        "url": args.url,
        "messages": args.messages,
        "size": args.size,
        "producers": args.producers,
        "consumers": args.consumers,
        "persistent": args.persistent,
        "confirm": False,
        "prefetch": args.prefetch,
        "published_per_s": rate(published_ns),
        "consumed_per_s": rate(consumed_ns),
        "elapsed_s": consumed_ns / 1e9,
        "latency_ms": {"p50": ms(0.5), "p99": ms(0.99), "max": (latency[-1] if latency else 0) / 1000},
        "peak_rss_mb": peak_rss_mb(),
        "polling_interval_s": args.polling_interval,
        "journal_mode": "wal" if args.wal else "delete",
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"broker       {args.url}")
    print(f"workload     {args.messages} x {args.size} bytes, {args.producers} producer(s), "
          f"{args.consumers} consumer(s), prefetch {args.prefetch}, "
          f"{'persistent' if args.persistent else 'transient'}")
    print(f"published    {result['published_per_s']:>12.0f} msg/s  ({published_ns / 1e9:.2f} s)")
    print(f"consumed     {result['consumed_per_s']:>12.0f} msg/s  ({consumed_ns / 1e9:.2f} s, acknowledged)")
    print(f"latency      p50 {ms(0.5):.3f} ms   p99 {ms(0.99):.3f} ms   max {result['latency_ms']['max']:.3f} ms")
    print(f"peak RSS     {result['peak_rss_mb'] or 0:>12.1f} MB")


if __name__ == "__main__":
    main()

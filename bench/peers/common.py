"""What the Python peers of benches/amqp.rs share: arguments, the round loop, medians, JSON.

Each peer supplies, for its library, the functions of `Peer` below; `main` runs the six
workloads of benches/amqp.rs in rounds (fresh queues each round, deleted afterwards), prints
a line per run on stderr and one JSON document on stdout.
"""

import argparse
import json
import os
import statistics
import sys
import time

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5682/%2F"
BODY = bytes(ord("a") + i % 26 for i in range(100))
PREFETCH = 1000
CONTENT_TYPE = "application/data"
CONTENT_ENCODING = "binary"

WORKLOADS = [
    "publish",
    "consume",
    "publish_consume",
    "confirm_publish",
    "confirm_consume",
    "confirm_publish_consume",
]


def env_int(name, default):
    value = os.environ.get(name, "").replace("_", "").strip()
    return int(value) if value else default


def arguments(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--url", default=os.environ.get("CARROT_BENCH_AMQP_URL") or DEFAULT_URL)
    p.add_argument("--messages", type=int, default=env_int("CARROT_BENCH_MESSAGES", 100_000))
    p.add_argument("--confirm-messages", type=int,
                   default=env_int("CARROT_BENCH_CONFIRM_MESSAGES", 10_000))
    p.add_argument("--rounds", type=int, default=env_int("CARROT_BENCH_ROUNDS", 3))
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    args = p.parse_args()
    args.workloads = args.workloads.split(",")
    for w in args.workloads:
        if w not in WORKLOADS:
            p.error(f"unknown workload {w}; known: {', '.join(WORKLOADS)}")
    return args


def redact(url):
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        userinfo, host = rest.rsplit("@", 1)
        return f"{scheme}://{userinfo.split(':')[0]}:***@{host}"
    return url


def queue_name(peer, rnd, workload):
    # A consume workload reads the queue its publish workload filled: one name for both.
    base = {"publish": "transient", "consume": "transient",
            "confirm_publish": "persistent", "confirm_consume": "persistent"}.get(workload, workload)
    return f"carrot-bench-{peer}-{os.getpid()}-r{rnd}-{base}"


class Peer:
    """What a peer implements. Each function returns the elapsed seconds of what it times."""

    name = "peer"
    version = ""
    notes = {}

    def declare(self, queue, durable):
        raise NotImplementedError

    def ready(self, queue):
        """Messages ready in the queue."""
        raise NotImplementedError

    def delete(self, queue):
        """Deletes the queue; returns how many messages it still held."""
        raise NotImplementedError

    def publish(self, queue, n, confirm):
        raise NotImplementedError

    def consume(self, queue, n):
        raise NotImplementedError

    def publish_consume(self, queue, n, confirm):
        raise NotImplementedError

    def close(self):
        pass


def wait_ready(peer, queue, n, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        ready = peer.ready(queue)
        if ready == n:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"queue {queue}: {ready} messages ready, expected {n}")
        time.sleep(0.02)


def run_one(peer, args, rnd, workload):
    confirm = workload.startswith("confirm_")
    n = args.confirm_messages if confirm else args.messages
    queue = queue_name(peer.name, rnd, workload)
    try:
        if workload.endswith("publish"):
            peer.declare(queue, durable=confirm)
            elapsed = peer.publish(queue, n, confirm)
            wait_ready(peer, queue, n)
            return n, elapsed
        if workload.endswith("publish_consume"):
            peer.declare(queue, durable=confirm)
            elapsed = peer.publish_consume(queue, n, confirm)
        else:
            elapsed = peer.consume(queue, n)
        left = peer.delete(queue)
        if left:
            raise RuntimeError(f"{queue}: {left} messages left after consuming")
        return n, elapsed
    except BaseException:
        try:
            peer.delete(queue)
        except Exception:  # noqa: BLE001 - best effort cleanup
            pass
        raise


def main(peer, args):
    for consume, publish in (("consume", "publish"), ("confirm_consume", "confirm_publish")):
        if consume in args.workloads and publish not in args.workloads:
            sys.exit(f"{consume} needs {publish} in --workloads")
    print(f"{peer.name} peer: {args.rounds} rounds on {redact(args.url)}; {args.messages} messages "
          f"({args.confirm_messages} with confirms), {len(BODY)}-byte bodies, prefetch {PREFETCH}",
          file=sys.stderr)
    runs = {w: {"rates": [], "seconds": []} for w in WORKLOADS if w in args.workloads}
    started = time.perf_counter()
    for rnd in range(1, args.rounds + 1):
        for workload in WORKLOADS:
            if workload not in args.workloads:
                continue
            n, elapsed = run_one(peer, args, rnd, workload)
            rate = n / elapsed
            print(f"round {rnd} {peer.name:>6} {workload:<24} {n:>7} msgs in {elapsed:7.3f} s: "
                  f"{rate:9.0f} msgs/s", file=sys.stderr)
            runs[workload]["rates"].append(rate)
            runs[workload]["seconds"].append(elapsed)
    total = time.perf_counter() - started
    peer.close()
    results = {w: {"median": statistics.median(r["rates"]), **r} for w, r in runs.items()}
    json.dump({
        "peer": peer.name,
        "version": peer.version,
        "python": sys.version.split()[0],
        "url": redact(args.url),
        "body_bytes": len(BODY),
        "prefetch": PREFETCH,
        "messages": args.messages,
        "confirm_messages": args.confirm_messages,
        "rounds": args.rounds,
        "total_seconds": total,
        "notes": peer.notes,
        "results": results,
    }, sys.stdout, indent=2)
    print()

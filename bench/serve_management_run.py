#!/usr/bin/env python3
"""`carrot serve` with and without its management listener, the API and /metrics scraped
every second (as Prometheus and a dashboard would), in one run, rounds alternating: the same
raw-lapin peer as bench/serve_run.py. With `--baseline BINARY` (the `carrot` of an earlier
commit), that build's serve takes part too, as a third column. Prints the BENCHMARKS.md
section on stdout.

    cargo build --release --bin carrot --example lapin_peer
    python3 bench/serve_management_run.py [--rounds 3] [--messages 200000] [--persistent-messages 40000] [--baseline PATH]
"""

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_run import free_port, peer, serve  # noqa: E402


def start(url, management, binary=None):
    """`carrot serve` of `url`, with a management listener if asked: (process, amqp URL, its
    port or None)."""
    http = free_port() if management else None
    extra = ["--management", f"127.0.0.1:{http}"] if management else []
    proc, amqp = serve(url, extra=extra, **({"binary": binary} if binary else {}))
    return proc, amqp, http


def scraper(http, stop, counts):
    """GET /metrics, /api/overview and /api/queues every second until stopped."""
    auth = "Basic Z3Vlc3Q6Z3Vlc3Q="
    while not stop.is_set():
        for path in ("/metrics", "/api/overview", "/api/queues"):
            request = urllib.request.Request(f"http://127.0.0.1:{http}{path}", headers={"Authorization": auth})
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
                counts[0] += 1
        stop.wait(1.0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--persistent-messages", type=int, default=40_000)
    parser.add_argument("--baseline", default=None, help="the carrot binary of an earlier commit")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="carrot-serve-mgmt-bench-")
    modes = ("off", "on") + (("baseline",) if args.baseline else ())
    servers = {}
    for mode in modes:
        binary = args.baseline if mode == "baseline" else None
        servers[("memory", mode)] = start(f"memory://bench-{mode}", mode == "on", binary)
        servers[("sqlite", mode)] = start(f"sqlite://{tmp}/bench-{mode}.db", mode == "on", binary)
    rates = {(k, mode): [] for k in ("t1", "t4", "p1") for mode in modes}
    scrapes = [0]
    stop = threading.Event()
    threads = [threading.Thread(target=scraper, args=(servers[(b, "on")][2], stop, scrapes), daemon=True)
               for b in ("memory", "sqlite")]
    for t in threads:
        t.start()
    try:
        for r in range(args.rounds):
            for mode in (modes if r % 2 == 0 else tuple(reversed(modes))):
                memory, memory_url, _ = servers[("memory", mode)]
                sqlite, sqlite_url, _ = servers[("sqlite", mode)]
                for channels in (1, 4):
                    t = peer(memory_url, args.messages, False, memory.pid, channels)
                    rates[(f"t{channels}", mode)].append(t["consumed_per_s"])
                p = peer(sqlite_url, args.persistent_messages, True, sqlite.pid, 1)
                rates[("p1", mode)].append(p["consumed_per_s"])
    finally:
        stop.set()
        for proc, _, _ in servers.values():
            proc.terminate()
            proc.wait()
    load = os.getloadavg()[0]
    print("## `carrot serve` with its management API scraped every second (issue 21)\n")
    print(f"Command: `python3 bench/serve_management_run.py --rounds {args.rounds} --messages {args.messages} "
          f"--persistent-messages {args.persistent_messages}` (release builds of carrot and bench/peers/lapin_peer.rs), "
          f"one run, rounds alternating between a server without `--management` and one with it, whose "
          f"`/metrics`, `/api/overview` and `/api/queues` a thread fetched every second ({scrapes[0]} requests in all); "
          f"load average {load:.1f} at the end, 2 cores. Consumed/s, median of the rounds [min - max].\n")
    baseline = " | earlier build, no management | this build / earlier" if args.baseline else ""
    print(f"| workload | without management | with management, scraped | with / without{baseline} |")
    print("| --- | ---: | ---: | ---: |" + (" ---: | ---: |" if args.baseline else ""))
    names = {"t1": "memory://, transient, 1/1", "t4": "memory://, transient, 4/4",
             "p1": "sqlite://, persistent + confirms, 1/1"}
    for key, name in names.items():
        off, on = rates[(key, "off")], rates[(key, "on")]
        mo, mn = statistics.median(off), statistics.median(on)
        row = f"| {name} | {mo:,.0f} [{min(off):,.0f} - {max(off):,.0f}] | {mn:,.0f} [{min(on):,.0f} - {max(on):,.0f}] | **{mn / mo:.2f}** |"
        if args.baseline:
            old = rates[(key, "baseline")]
            mb = statistics.median(old)
            row += f" {mb:,.0f} [{min(old):,.0f} - {max(old):,.0f}] | **{mo / mb:.2f}** |"
        print(row)


if __name__ == "__main__":
    main()

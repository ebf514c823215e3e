#!/usr/bin/env python3
"""The same raw-lapin peer (bench/peers/lapin_peer.rs) against RabbitMQ and against
`carrot serve`, in one run, rounds alternating; and the memory of 1,000 idle connections to
each. Prints the BENCHMARKS.md section (markdown) on stdout.

    cargo build --release --bin carrot --example lapin_peer
    eval "$(bash .ci/rabbitmq.sh start)"       # RabbitMQ on 127.0.0.1:5672
    python3 bench/serve_run.py [--rounds 3] [--messages 200000] [--persistent-messages 50000]

Workloads (1 producer, 1 consumer, 100-byte bodies, prefetch 1000):
- transient: RabbitMQ with a transient queue, against `carrot serve --url memory://`;
- persistent: delivery mode 2 with publisher confirms (256 in flight), RabbitMQ with a durable
  queue, against `carrot serve --url sqlite://FILE` (confirmed after each commit).
Idle connections: 1,000 AMQP connections opened (handshake done, then idle), the server's
resident memory before and after (RabbitMQ: the beam process; carrot: the carrot process).
"""

import argparse
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CARROT = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release/carrot")
PEER = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release/examples/lapin_peer")
RABBIT = os.environ.get("CARROT_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(url, threads=None, extra=(), binary=CARROT):
    """`carrot serve` of `url` on a free port, with `extra` arguments, from `binary` (this
    tree's release build by default); (process, amqp URL)."""
    port = free_port()
    extra = (["--threads", str(threads)] if threads else []) + list(extra)
    proc = subprocess.Popen(
        [binary, "--url", url, "serve", "--listen", f"127.0.0.1:{port}"] + extra,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline:
                sys.exit("carrot serve did not start")
            time.sleep(0.05)
    return proc, f"amqp://guest:guest@127.0.0.1:{port}/%2F"


def peer(url, messages, persistent, server_pid, channels=1):
    args = [PEER, "--url", url, "--messages", str(messages), "--size", "100", "--prefetch", "1000", "--json",
            "--producers", str(channels), "--consumers", str(channels)]
    if persistent:
        args += ["--persistent", "--confirm", "--confirm-window", "256"]
    before = cpu_s(server_pid)
    out = subprocess.run(args, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        sys.exit(f"lapin_peer failed on {url}: {out.stderr}")
    result = json.loads(out.stdout)
    # Messages per second of the server's own CPU: what the server costs, whoever the
    # bottleneck of the run is (on 2 cores, the client's).
    result["per_server_cpu_s"] = messages / max(cpu_s(server_pid) - before, 1e-3)
    return result


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def beam_pid():
    """The process listening on RabbitMQ's port (5672)."""
    out = subprocess.run(["ss", "-ltnpH", "sport = :5672"], capture_output=True, text=True)
    for part in out.stdout.split("pid=")[1:]:
        return int(part.split(",")[0])
    return None


def cpu_s(pid):
    """User + system CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def frame(kind, channel, payload):
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + b"\xce"


def short(s):
    b = s.encode()
    return struct.pack(">B", len(b)) + b


def long_str(b):
    return struct.pack(">I", len(b)) + b


def read_frame(sock):
    head = b""
    while len(head) < 7:
        chunk = sock.recv(7 - len(head))
        if not chunk:
            raise OSError("closed")
        head += chunk
    kind, channel, size = struct.unpack(">BHI", head)
    body = b""
    while len(body) < size + 1:
        chunk = sock.recv(size + 1 - len(body))
        if not chunk:
            raise OSError("closed")
        body += chunk
    return kind, body[:-1]


def idle_connection(port):
    """A raw AMQP 0-9-1 handshake (PLAIN guest/guest, heartbeat 0), then nothing."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"AMQP\x00\x00\x09\x01")
    read_frame(sock)  # connection.start
    start_ok = struct.pack(">HH", 10, 11) + struct.pack(">I", 0) + short("PLAIN") + long_str(b"\x00guest\x00guest") + short("en_US")
    sock.sendall(frame(1, 0, start_ok))
    _, tune = read_frame(sock)  # connection.tune
    channel_max, frame_max, _ = struct.unpack(">HIH", tune[4:12])
    sock.sendall(frame(1, 0, struct.pack(">HHHIH", 10, 31, channel_max, frame_max, 0)))
    sock.sendall(frame(1, 0, struct.pack(">HH", 10, 40) + short("/") + short("") + b"\x00"))
    read_frame(sock)  # connection.open-ok
    return sock


def idle_cost(pid, port, count):
    """(RSS before, RSS after, connections opened): a server that stops answering handshakes
    (RabbitMQ out of file descriptors) ends the count there."""
    before = rss_kb(pid)
    socks = []
    try:
        for _ in range(count):
            socks.append(idle_connection(port))
    except OSError as e:
        print(f"stopped after {len(socks)} connections: {e}", file=sys.stderr)
    time.sleep(2)
    after = rss_kb(pid)
    for s in socks:
        s.close()
    return before, after, len(socks)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--persistent-messages", type=int, default=50_000)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=None, help="carrot serve --threads")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="carrot-serve-bench-")
    memory, memory_url = serve("memory://bench", args.threads)
    sqlite, sqlite_url = serve(f"sqlite://{tmp}/bench.db", args.threads)
    keys = ("t1", "t4", "p1", "p4")
    rates = {f"{who}_{k}": [] for who in ("rabbit", "serve") for k in keys}
    cpu = {k: [] for k in rates}
    rabbit = beam_pid()
    if rabbit is None:
        sys.exit("no RabbitMQ listening on 5672: eval \"$(bash .ci/rabbitmq.sh start)\"")
    try:
        for r in range(args.rounds):
            order = [("rabbit", RABBIT), ("serve", None)] if r % 2 == 0 else [("serve", None), ("rabbit", RABBIT)]
            for who, url in order:
                for channels in (1, 4):
                    t = peer(url or memory_url, args.messages, False, rabbit if url else memory.pid, channels)
                    p = peer(url or sqlite_url, args.persistent_messages, True, rabbit if url else sqlite.pid, channels)
                    for key, result in ((f"t{channels}", t), (f"p{channels}", p)):
                        rates[f"{who}_{key}"].append(result["consumed_per_s"])
                        cpu[f"{who}_{key}"].append(result["per_server_cpu_s"])
        port = int(memory_url.rsplit(":", 1)[1].split("/")[0])
        serve_idle = idle_cost(memory.pid, port, args.idle)
        rabbit_idle = idle_cost(rabbit, 5672, args.idle)
    finally:
        memory.terminate()
        sqlite.terminate()
        memory.wait()
        sqlite.wait()
    med = {k: statistics.median(v) for k, v in rates.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    load = os.getloadavg()[0]
    print("## `carrot serve` against RabbitMQ: the same raw-lapin peer on both (issue 12)\n")
    print(f"Command: `python3 bench/serve_run.py --rounds {args.rounds} --messages {args.messages} "
          f"--persistent-messages {args.persistent_messages}` (builds: `cargo build --release --bin carrot "
          f"--example lapin_peer`; RabbitMQ from `.ci/rabbitmq.sh start`), one run, rounds alternating, "
          f"load average {load:.1f} at the end, 2 cores. The client is bench/peers/lapin_peer.rs (one connection; "
          f"1 producer and 1 consumer, or 4 and 4, each on its own channel; 100-byte bodies, prefetch 1000); "
          f"consumed/s, median of the rounds [min - max].\n")
    print("| workload | RabbitMQ | carrot serve | carrot / RabbitMQ | target |")
    print("| --- | ---: | ---: | ---: | --- |")
    workloads = (("t1", "transient 1/1, memory:// (RabbitMQ: transient queue)", "2x"),
                 ("t4", "transient 4/4, memory:// (RabbitMQ: transient queue)", "2x"),
                 ("p1", "persistent + confirms (256 in flight) 1/1, sqlite:// (RabbitMQ: durable queue)", "1x"),
                 ("p4", "persistent + confirms (256 in flight) 4/4, sqlite:// (RabbitMQ: durable queue)", "1x"))
    for key, name, target in workloads:
        a, b = rates[f"rabbit_{key}"], rates[f"serve_{key}"]
        print(f"| {name}: consumed/s | {med['rabbit_'+key]:,.0f} [{min(a):,.0f} - {max(a):,.0f}] | "
              f"{med['serve_'+key]:,.0f} [{min(b):,.0f} - {max(b):,.0f}] | "
              f"{med['serve_'+key]/med['rabbit_'+key]:.2f}x | at least {target} |")
        a, b = cpu[f"rabbit_{key}"], cpu[f"serve_{key}"]
        print(f"| {name}: messages per CPU-second of the server | {med_cpu['rabbit_'+key]:,.0f} [{min(a):,.0f} - {max(a):,.0f}] | "
              f"{med_cpu['serve_'+key]:,.0f} [{min(b):,.0f} - {max(b):,.0f}] | "
              f"{med_cpu['serve_'+key]/med_cpu['rabbit_'+key]:.2f}x | |")
    print()
    print(f"Memory of {args.idle:,} idle connections (resident memory of the server process, before -> after):\n")
    print("| server | connections opened | before | after | per connection |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, (before, after, opened) in (("RabbitMQ (beam)", rabbit_idle), ("carrot serve (memory://)", serve_idle)):
        print(f"| {name} | {opened:,} | {before/1024:,.1f} MiB | {after/1024:,.1f} MiB | {(after-before)/max(opened, 1):,.1f} KiB |")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes the RabbitMQ section of BENCHMARKS.md from one run of bench/amqp_run.sh: the JSON of
benches/amqp.rs (carrot and raw lapin, alternating in one process) and of the Python peers
(bench/peers/pika_peer.py, bench/peers/kombu_peer.py).

Only the part between the markers below is replaced (appended when missing), so the memory://
section bench/report.py writes stays as it is; bench/report.py keeps this part in turn.
"""

import argparse
import json
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import fmt, load_now, machine  # noqa: E402

BEGIN = "<!-- amqp:begin: written by bench/amqp_report.py (bench/amqp_run.sh); keep the markers -->"
END = "<!-- amqp:end -->"
BEGIN_RE = re.compile(r"<!-- amqp:begin[^>]*-->")

LAPIN_RATIO = 0.95
PEER_RATIO = 3.0

# (key, what it times, counts for the issue-3 target)
WORKLOADS = [
    ("publish", "publish N transient bodies, no confirms", False),
    ("consume", "consume those N, prefetch 1000, ack each", False),
    ("publish_consume", "publisher and consumer at once: N / time to the last ack", True),
    ("confirm_publish", "publish M persistent bodies to a durable queue, confirm each", False),
    ("confirm_consume", "consume those M persistent messages, prefetch 1000, ack each", False),
    ("confirm_publish_consume", "publisher (confirm each, persistent) and consumer at once", True),
]


def load(path):
    with open(path) as f:
        return json.load(f)


def median(results, impl, workload):
    try:
        return results[impl][workload]["median"]
    except KeyError:
        return None


def span(results, impl, workload):
    rates = results.get(impl, {}).get(workload, {}).get("rates") or []
    if not rates:
        return ""
    return f"{fmt(min(rates))} - {fmt(max(rates))}"


def ratio(a, b, digits=2):
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.{digits}f}"


def verdict(a, b, threshold):
    if a is None or b is None or b == 0:
        return "not measured"
    return "met" if a / b >= threshold else "**not met**"


def lapin_version(root):
    try:
        with open(os.path.join(root, "Cargo.lock")) as f:
            text = f.read()
    except OSError:
        return "?"
    m = re.search(r'name = "lapin"\nversion = "([^"]+)"', text)
    return m.group(1) if m else "?"


def section(a, rust, pika, kombu):
    m = machine()
    r = rust["results"]
    pk = pika["results"]
    kb = kombu["results"]
    n, mm = rust["messages"], rust["confirm_messages"]
    for peer in (pika, kombu):
        if (peer["messages"], peer["confirm_messages"]) != (n, mm):
            sys.exit(f"{peer['peer']} ran {peer['messages']}/{peer['confirm_messages']} messages, "
                     f"the Rust bench {n}/{mm}: run them with the same numbers")
    broker = kombu.get("notes", {}).get("broker", "RabbitMQ")
    lines = []
    w = lines.append
    w(BEGIN)
    w("## RabbitMQ (`amqp://`): carrot against raw lapin, pika and kombu")
    w("")
    w("Written by `bench/amqp_run.sh` from one run: `benches/amqp.rs` runs carrot and raw lapin (the")
    w("client carrot is built on) alternately in one process, then pika's `BlockingConnection` and")
    w("kombu run the same workloads, one after the other, on the same broker. Broker and clients")
    w("share the machine's cores, and the machine is shared (see the load averages), so compare the")
    w("ratios rather than the absolute figures; carrot / lapin is the most trustworthy ratio, as its")
    w("runs interleave.")
    w("")
    w("### Machine and broker")
    w("")
    w(f"- {m['cores']} cores, {m['cpu']}, {m['memory']} RAM")
    w(f"- {m['os']}")
    w(f"- {m['rustc']}; lapin {lapin_version(a.root)}; pika {pika['version']} and kombu "
      f"{kombu['version']} ({kombu.get('notes', {}).get('client', '').split(' on ')[-1]}) on Python {kombu['python']}")
    w(f"- {broker}, at `{rust['url']}` (loopback), on the same cores as the clients")
    w(f"- {m['date']}; load average (1, 5, 15 min): {a.load_start} at the start, "
      f"{a.load_rust} after the Rust bench, {a.load_pika} after pika, {a.load_end or load_now()} at the end")
    w("")
    w("### Commands")
    w("")
    w("```sh")
    w("bench/amqp_run.sh   # runs the three below, then bench/amqp_report.py writes this section")
    w(a.cmd_rust)
    w(a.cmd_pika)
    w(a.cmd_kombu)
    w("```")
    w("")
    w(f"### Throughput: 100-byte bodies, one publisher, one consumer (msgs/s, median of {rust['rounds']} rounds)")
    w("")
    w(f"N = {n:,} transient messages, M = {mm:,} persistent messages with publisher confirms;")
    w("the range of the rounds is in brackets. Every run has fresh queues of its own.")
    w("")
    w("| workload | what is timed | carrot | raw lapin | carrot / lapin | pika | carrot / pika | kombu | carrot / kombu |")
    w("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for key, what, _ in WORKLOADS:
        c, l = median(r, "carrot", key), median(r, "lapin", key)
        p, k = pk.get(key, {}).get("median"), kb.get(key, {}).get("median")
        cells = []
        for value, rng in ((c, span(r, "carrot", key)), (l, span(r, "lapin", key))):
            cells.append(f"{fmt(value)} [{rng}]" if value is not None else "-")
        pr = f"{fmt(min(pk[key]['rates']))} - {fmt(max(pk[key]['rates']))}" if key in pk else ""
        kr = f"{fmt(min(kb[key]['rates']))} - {fmt(max(kb[key]['rates']))}" if key in kb else ""
        w(f"| `{key}` | {what} | {cells[0]} | {cells[1]} | {ratio(c, l)} | "
          f"{fmt(p) + ' [' + pr + ']' if p is not None else '-'} | {ratio(c, p, 1)}x | "
          f"{fmt(k) + ' [' + kr + ']' if k is not None else '-'} | {ratio(c, k, 1)}x |")
    w("")
    w("- carrot: `Publisher::send` of a raw body (`serializer(\"raw\")`, `confirm_publish(true)` for")
    w("  the confirm rows: `send` returns once the broker confirmed); `Consumer::qos(Qos::new().prefetch_count(1000))`,")
    w("  `Consumer::next_message` + `Message::ack`.")
    w("- raw lapin, with carrot's semantics and as fast as lapin goes: `basic_publish(..).await` for")
    w("  each message (and each `PublisherConfirm` awaited in the confirm rows); the `Consumer`")
    w("  stream, each `basic_ack` handed to lapin without waiting for it to be written (acks")
    w("  pipelined). Same properties on the wire as carrot (`application/data`, `binary`, delivery mode).")
    w("- pika: `basic_publish` (`confirm_delivery()` for the confirm rows), `basic_consume` with a")
    w("  callback that calls `basic_ack`; kombu: `Producer.publish` (`confirm_publish` transport")
    w("  option), `Consumer` callback + `message.ack()`, `drain_events`. In the concurrent rows the")
    w("  Python consumer runs on a thread and connection of its own (one connection per thread is")
    w("  how both libraries work); the Rust ones are two tasks on one connection, 2 tokio workers.")
    w("- A consume run ends at the last ack handed to the client library; then the queue is deleted")
    w("  and must hold nothing, so every message was consumed and acknowledged. A publish run ends")
    w("  when the last `send` returns; then the queue must hold all N.")
    w("")
    cpu_rows = [(key, r.get("carrot", {}).get(key, {}).get("cpu_us_per_msg_median"),
                 r.get("lapin", {}).get(key, {}).get("cpu_us_per_msg_median")) for key, _, _ in WORKLOADS]
    if any(c is not None for _, c, _ in cpu_rows):
        w("Client CPU per message, median of the rounds: the bench process, user + system, over the whole")
        w("run of the workload (setup included), in 10 ms ticks, so the short confirm runs are coarse.")
        w("RabbitMQ's CPU is not counted, but it competes for the same cores, so client CPU per message")
        w("costs throughput even when the client is not the bottleneck:")
        w("")
        w("| workload | carrot us/msg | raw lapin us/msg |")
        w("| --- | ---: | ---: |")
        for key, c, l in cpu_rows:
            if c is not None and l is not None:
                w(f"| `{key}` | {c:.1f} | {l:.1f} |")
        w("")
    if "lapin_pipelined" in r:
        w("#### Extra: publishing without awaiting each publish or confirm (labelled, not the target)")
        w("")
        w("`lapin_pipelined`: every publish frame queued at once (the last one awaited); with confirms,")
        w("up to 1000 in flight, awaited in order. `carrot_pipelined`: what carrot's API allows today, 100")
        w("tasks sending at once on one `Arc<Publisher>` (each awaiting its own sends and confirms).")
        w("")
        w("| workload | carrot (one by one) | carrot_pipelined | lapin_pipelined | carrot_pipelined / lapin_pipelined | carrot_pipelined / pika | carrot_pipelined / kombu |")
        w("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for key, _, _ in WORKLOADS:
            lp = median(r, "lapin_pipelined", key)
            if lp is None:
                continue
            c = median(r, "carrot", key)
            cp = median(r, "carrot_pipelined", key)
            p = pk.get(key, {}).get("median")
            k = kb.get(key, {}).get("median")
            w(f"| `{key}` | {fmt(c) if c else '-'} | {fmt(cp) if cp else '-'} | {fmt(lp)} | {ratio(cp, lp)} | "
              f"{ratio(cp, p, 1)}x | {ratio(cp, k, 1)}x |")
        w("")
    w("### Targets (issue 3)")
    w("")
    w(f"publish+consume of 100-byte messages through carrot at least {LAPIN_RATIO:.0%} of raw lapin's")
    w(f"throughput and at least {PEER_RATIO:.0f}x pika's and kombu's; with confirms and persistence, the same")
    w("ratios reported. The target row is `publish_consume`; its parts and the confirm rows are")
    w("given with the same thresholds for information.")
    w("")
    w("| workload | carrot / lapin | carrot / pika | carrot / kombu |")
    w("| --- | --- | --- | --- |")
    for key, _, counts in WORKLOADS:
        c, l = median(r, "carrot", key), median(r, "lapin", key)
        p, k = pk.get(key, {}).get("median"), kb.get(key, {}).get("median")
        name = f"**`{key}` (target)**" if key == "publish_consume" else f"`{key}`"
        w(f"| {name} | {ratio(c, l)} (>= {LAPIN_RATIO}: {verdict(c, l, LAPIN_RATIO)}) | "
          f"{ratio(c, p, 1)}x (>= {PEER_RATIO:.0f}x: {verdict(c, p, PEER_RATIO)}) | "
          f"{ratio(c, k, 1)}x (>= {PEER_RATIO:.0f}x: {verdict(c, k, PEER_RATIO)}) |")
    w("")
    c, l = median(r, "carrot", "publish_consume"), median(r, "lapin", "publish_consume")
    p, k = pk.get("publish_consume", {}).get("median"), kb.get("publish_consume", {}).get("median")
    met = [verdict(c, l, LAPIN_RATIO), verdict(c, p, PEER_RATIO), verdict(c, k, PEER_RATIO)]
    w(f"Target: {ratio(c, l)} of raw lapin ({met[0]}), {ratio(c, p, 1)}x pika ({met[1]}), "
      f"{ratio(c, k, 1)}x kombu ({met[2]}).")
    cc = median(r, "carrot", "confirm_publish_consume")
    if cc is not None:
        cl = median(r, "lapin", "confirm_publish_consume")
        cpk = pk.get("confirm_publish_consume", {}).get("median")
        ckb = kb.get("confirm_publish_consume", {}).get("median")
        w("")
        w(f"With confirms and persistence (`confirm_publish_consume`): {ratio(cc, cl)} of raw lapin, "
          f"{ratio(cc, cpk, 1)}x pika, {ratio(cc, ckb, 1)}x kombu.")
        w("Waiting for each confirm before the next publish makes every client wait for the broker's")
        w("round trip (and its disk write) per message, so all of them land at about the same rate;")
        w("only confirms in flight together (the extra table) go faster.")
    w(END)
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rust", required=True, help="JSON of benches/amqp.rs")
    p.add_argument("--pika", required=True)
    p.add_argument("--kombu", required=True)
    p.add_argument("--cmd-rust", required=True)
    p.add_argument("--cmd-pika", required=True)
    p.add_argument("--cmd-kombu", required=True)
    p.add_argument("--load-start", default="?")
    p.add_argument("--load-rust", default="?")
    p.add_argument("--load-pika", default="?")
    p.add_argument("--load-end", help="default: now")
    p.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    p.add_argument("--out", required=True)
    a = p.parse_args()

    text = section(a, load(a.rust), load(a.pika), load(a.kombu))
    try:
        with open(a.out) as f:
            old = f.read()
    except FileNotFoundError:
        old = "# Benchmarks\n"
    begin = BEGIN_RE.search(old)
    end = old.find(END)
    if begin and end > begin.start():
        rest = old[end + len(END):].lstrip("\n")
        new = old[:begin.start()] + text + ("\n" + rest if rest else "")
    else:
        new = old.rstrip("\n") + "\n\n" + text
    with open(a.out, "w") as f:
        f.write(new)


if __name__ == "__main__":
    main()

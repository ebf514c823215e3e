#!/usr/bin/env python3
"""Writes BENCHMARKS.md from one run of bench/run.sh: criterion's estimates for
benches/memory.rs, the JSON line of benches/memory_hold.rs and bench/kombu_memory.py's JSON.
The sections other scripts write (bench/amqp_report.py, bench/cli_report.py,
bench/sqlite_report.py), each between its markers, are kept."""

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys

GROUP = "memory_100B"
TARGET_RATE = 1_000_000
TARGET_MB = 350

# (criterion function, what it does, kombu key, what kombu does, counts for the 1M msg/s target)
ROWS = [
    ("publish", "`Publisher::send`", "publish", "`Producer.publish`", False),
    ("consume_ack", "`Consumer::fetch` + `ack`", "consume_get", "`Queue.get` + `ack`", False),
    ("consume_no_ack", "`Consumer::fetch`, `no_ack`", "consume_get_no_ack", "`Queue.get(no_ack=True)`", False),
    ("consume_next_ack", "`Consumer::next_message` + `ack`", "consume_drain", "`Consumer` callback + `ack`, `drain_events`", False),
    ("publish_consume_one_task", "publish N, then fetch + ack N, one task", "publish_consume_get", "publish N, then `Queue.get` + `ack` N", True),
    ("publish_consume_two_tasks", "publisher task and consumer task (`next_message` + ack) spawned together, 2 workers", "publish_consume_drain", "publish N, then `drain_events` + ack N (one thread)", True),
    ("publish_consume_two_threads", "the same, publisher and consumer each on an OS thread of its own", "publish_consume_drain", "publish N, then `drain_events` + ack N (one thread)", True),
]


def estimate(criterion_dir, function, since):
    base = os.path.join(criterion_dir, GROUP, function, "new")
    est_path = os.path.join(base, "estimates.json")
    if os.path.getmtime(est_path) < since:
        sys.exit(f"{est_path} is older than this run: did the bench run?")
    with open(est_path) as f:
        est = json.load(f)
    with open(os.path.join(base, "benchmark.json")) as f:
        elements = json.load(f)["throughput"]["Elements"]
    mean = est["mean"]
    rate = elements / (mean["point_estimate"] / 1e9)
    # A longer time is a lower rate: the bounds swap.
    low = elements / (mean["confidence_interval"]["upper_bound"] / 1e9)
    high = elements / (mean["confidence_interval"]["lower_bound"] / 1e9)
    return rate, low, high, elements


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            mem_kb = int(f.readline().split()[1])
        mem = f"{mem_kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        mem = "unknown"
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    os_name = platform.platform()
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    os_name = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory": mem,
        "os": f"{os_name}, kernel {platform.release()}",
        "rustc": rustc,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def load_now():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def fmt(rate):
    return f"{rate:,.0f}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--criterion", required=True)
    p.add_argument("--since", type=float, required=True)
    p.add_argument("--hold", required=True)
    p.add_argument("--kombu", required=True)
    p.add_argument("--cmd-memory", required=True)
    p.add_argument("--cmd-hold", required=True)
    p.add_argument("--cmd-kombu", required=True)
    p.add_argument("--load-start", default="?")
    p.add_argument("--load-end", help="default: now")
    p.add_argument("--out", required=True)
    a = p.parse_args()

    with open(a.hold) as f:
        hold = json.load(f)
    with open(a.kombu) as f:
        kombu = json.load(f)
    m = machine()
    krates = kombu["msgs_per_s"]

    lines = []
    w = lines.append
    w("# Benchmarks")
    w("")
    w("Written by `bench/run.sh` from one run: carrot's embedded `memory://` broker and, as the peer,")
    w("kombu's `memory://` transport, measured on the same machine one after the other. These machines")
    w("are noisy (and shared: the load average below tells whether other work ran meanwhile), so")
    w("compare the ratios rather than the absolute figures.")
    w("")
    w("## Machine")
    w("")
    w(f"- {m['cores']} cores, {m['cpu']}, {m['memory']} RAM")
    w(f"- {m['os']}")
    w(f"- {m['rustc']}; kombu {kombu['kombu']} on Python {kombu['python']}")
    w(f"- {m['date']}; load average (1, 5, 15 min) {a.load_start} at the start, {a.load_end or load_now()} at the end")
    w("")
    w("## Commands")
    w("")
    w("```sh")
    w("bench/run.sh   # runs the three below, then bench/report.py writes this file")
    w(a.cmd_memory)
    w(a.cmd_hold)
    w(a.cmd_kombu)
    w("```")
    w("")
    w("## Throughput: 100-byte raw bodies, one publisher, one consumer")
    w("")
    elements = None
    rows = []
    for function, what, kkey, kwhat, counts in ROWS:
        rate, low, high, elements = estimate(a.criterion, function, a.since)
        krate = krates[kkey]
        rows.append((function, what, rate, low, high, kkey, kwhat, krate, counts))
    w(f"carrot: criterion, {elements:,} messages per iteration, persistent, through a direct exchange;")
    w("msgs/s = messages per iteration / mean time per iteration (95% interval in brackets).")
    w(f"kombu: median of {kombu['rounds']} rounds of {kombu['n']:,} messages, `application/data` / `binary`,")
    w("persistent, through a direct exchange. Combined rates are N / (publish time + consume time).")
    w("")
    w("| workload | carrot | carrot msgs/s | kombu | kombu msgs/s | carrot / kombu |")
    w("| --- | --- | ---: | --- | ---: | ---: |")
    for function, what, rate, low, high, kkey, kwhat, krate, _ in rows:
        w(f"| `{function}` | {what} | {fmt(rate)} [{fmt(low)} - {fmt(high)}] | {kwhat} | {fmt(krate)} | {rate / krate:.1f}x |")
    w("")
    w("The kombu side of `publish_consume_two_tasks` and `_two_threads` runs in one thread: kombu's")
    w("memory transport keeps its queues per process and Python runs one thread at a time, so its")
    w("sequential publish-then-drain is the nearest peer. `_two_tasks` measures what tokio makes of two")
    w("spawned tasks (they may well share one worker); `_two_threads` puts publisher and consumer on")
    w("the two cores at once, where they meet on the broker's lock.")
    w("The two concurrent workloads need both cores at once, so they suffer most when anything else")
    w("runs (see the load average); their 95% intervals show how much: rerun before concluding.")
    w("In `consume_next_ack`, carrot's broker already handed the messages to the open subscription while")
    w("they were published (untimed); kombu's `drain_events` takes them from the queue while timed.")
    w("")
    w(f"### Target: {TARGET_RATE:,} msgs/s publish+consume")
    w("")
    for function, _, rate, low, high, *_rest, counts in rows:
        if counts:
            verdict = "met" if rate >= TARGET_RATE else "**not met**"
            w(f"- `{function}`: {fmt(rate)} msgs/s ({rate / TARGET_RATE:.2f} of the target): {verdict}")
    w("")
    w("## Memory: 1,000,000 queued 100-byte messages")
    w("")
    kh = kombu.get("hold")
    peak = hold["peak_rss_mb"]
    verdict = "met" if peak < TARGET_MB else "**not met**"
    per_msg = (hold["rss_mb"] - hold["baseline_rss_mb"]) * 1e6 / hold["messages"]
    w("| | messages queued | peak RSS | per message | target |")
    w("| --- | ---: | ---: | ---: | --- |")
    w(f"| carrot `memory://` (`memory_hold`) | {hold['messages']:,} | {peak:.1f} MB | {per_msg:.0f} B | < {TARGET_MB} MB: {verdict} |")
    if kh:
        note = ""
        if kh.get("scaled"):
            note = f" (measured with {kh['messages']:,}, scaled linearly to {kh['target_messages']:,})"
        w(f"| kombu `memory://` (reference) | {kh['target_messages']:,} | {kh['peak_rss_mb_for_target']:.1f} MB{note} | {kh['bytes_per_message']:.0f} B | |")
    w("")
    w("Peak RSS is `VmHWM` of `/proc/self/status` for carrot (the whole process: broker, runtime and")
    w("benchmark) and `ru_maxrss` of a fresh Python process for kombu; per message is the growth over")
    w("the process's RSS before publishing, divided by the number of messages. MB = 10^6 bytes.")
    if kh:
        w(f"carrot holds them in {peak / kh['peak_rss_mb_for_target']:.2f} of kombu's memory.")
    w(f"carrot queued them at {hold['messages'] / hold['publish_s']:,.0f} msgs/s; kombu at {kh['messages'] / kh['publish_s']:,.0f} msgs/s." if kh else "")
    w("")
    text = "\n".join(lines).rstrip() + "\n"
    # Keep the sections other scripts write, each between its markers `<!-- KEY:begin ... -->`
    # and `<!-- KEY:end -->`, as they are and in their order: RabbitMQ (bench/amqp_report.py),
    # `carrot bench` against its peers (bench/cli_report.py), SQLite (bench/sqlite_report.py).
    try:
        with open(a.out) as f:
            old = f.read()
        for kept in re.finditer(r"<!-- (\w+):begin[^>]*-->.*?<!-- \1:end -->", old, re.S):
            text += "\n" + kept.group(0) + "\n"
    except FileNotFoundError:
        pass
    with open(a.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes the sqlite section of BENCHMARKS.md from one run of bench/sqlite_run.sh: `carrot bench
--persistent` on `sqlite://` against kombu's SQLAlchemy transport on SQLite
(bench/peers/kombu_sqlite.py), the same shapes, medians of the rounds.

Only the part between the markers below is replaced (appended at the end when missing): the
other sections (memory, amqp, cli) belong to other scripts and stay as they are.

    python3 bench/sqlite_report.py --manifest DIR/runs.tsv --commands DIR/commands.tsv \\
        --date "..." --rounds 3 --elapsed 300 --load-start "1 1 1" --load-end "1 1 1" \\
        --built "..." --run-command "bench/sqlite_run.sh" --out BENCHMARKS.md
"""

import argparse
import glob
import json
import os
import platform
import re
import statistics
import subprocess
import sys

BEGIN = "<!-- sqlite:begin: written by bench/sqlite_report.py (bench/sqlite_run.sh); keep the markers -->"
END = "<!-- sqlite:end -->"
BEGIN_RE = re.compile(r"<!-- sqlite:begin[^>]*-->")
TARGET = 50_000
SHAPES = ["1p1c", "2p2c", "4p4c", "8p4c", "8p8c", "16p16c"]
LABELS = {
    "carrot": "carrot `sqlite://`",
    "kombu": "kombu SQLAlchemy, SQLite defaults",
    "kombu_wal": "kombu SQLAlchemy, WAL + `synchronous=NORMAL`",
}


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def first_line_of(path, prefix):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip() if ":" in line else line.split("=", 1)[1]
    except OSError:
        pass
    return None


def carrot_sqlite_version():
    """The SQLite that rusqlite bundles into carrot (Cargo.lock's libsqlite3-sys)."""
    crate = None
    try:
        lock = open("Cargo.lock").read()
        m = re.search(r'name = "libsqlite3-sys"\nversion = "([^"]+)"', lock)
        crate = m and m.group(1)
    except OSError:
        pass
    if not crate:
        return "unknown"
    home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    for header in glob.glob(f"{home}/registry/src/*/libsqlite3-sys-{crate}/sqlite3/sqlite3.h"):
        with open(header, errors="replace") as f:
            m = re.search(r'#define SQLITE_VERSION\s+"([^"]+)"', f.read())
        if m:
            return f"SQLite {m.group(1)} (bundled by libsqlite3-sys {crate})"
    return f"the SQLite bundled by libsqlite3-sys {crate}"


def machine():
    cpu = first_line_of("/proc/cpuinfo", "model name") or platform.processor() or "unknown"
    mem = first_line_of("/proc/meminfo", "MemTotal")
    mem = f"{int(mem.split()[0]) / 1024 / 1024:.1f} GiB RAM" if mem else "RAM unknown"
    osname = (first_line_of("/etc/os-release", "PRETTY_NAME=") or platform.system()).strip().strip('"')
    df = sh("df", "-T", "/tmp")
    disk = "unknown"
    if df:
        fields = df.splitlines()[-1].split()
        if len(fields) >= 7:
            disk = (f"`{fields[0]}`, {fields[1]}, {int(fields[2]) / 1024 / 1024:.0f} GiB "
                    f"({fields[5]} used), mounted on `{fields[6]}`")
    rows = [
        f"{sh('nproc') or os.cpu_count()} cores (nproc), {cpu}, {mem}",
        f"{osname}, kernel {platform.release()}",
        f"/tmp (where every run's file is) on {disk} (`df -T /tmp`)",
    ]
    import sqlite3
    import kombu
    import sqlalchemy
    rows.append(f"{sh('rustc', '--version') or 'rustc unknown'}; carrot's {carrot_sqlite_version()}")
    rows.append(f"kombu {kombu.__version__}, SQLAlchemy {sqlalchemy.__version__} on Python "
                f"{platform.python_version()} with SQLite {sqlite3.sqlite_version}")
    return rows


def fmt(v):
    return f"{v:,.0f}"


def rate_cell(values):
    med = statistics.median(values)
    if len(values) == 1:
        return fmt(med)
    return f"{fmt(med)} [{fmt(min(values))} - {fmt(max(values))}]"


def ms(v):
    return f"{v:,.1f}" if v >= 10 else f"{v:.3f}"


def load_runs(manifest):
    runs = {}
    with open(manifest) as f:
        for line in f:
            name, imp, rnd, path, before, after, times = line.rstrip("\n").split("\t")
            with open(path) as j:
                r = json.load(j)
            wall, user, system = map(float, times.split())
            r["_cpu_us"] = (user + system) * 1e6 / max(r["messages"], 1)
            r["_wall"] = wall
            r["_load"] = (float(before.split()[0]), float(after.split()[0]))
            r["_round"] = int(rnd)
            runs.setdefault((name, imp), []).append(r)
    return runs


def summary(rs):
    med = lambda f: statistics.median(f(r) for r in rs)  # noqa: E731
    return {
        "n": rs[0]["messages"],
        "published": [r["published_per_s"] for r in rs],
        "consumed": [r["consumed_per_s"] for r in rs],
        "p50": med(lambda r: r["latency_ms"]["p50"]),
        "p99": med(lambda r: r["latency_ms"]["p99"]),
        "rss": med(lambda r: r["peak_rss_mb"] or 0),
        "cpu": med(lambda r: r["_cpu_us"]),
        "wall": med(lambda r: r["_wall"]),
        "load": max(max(r["_load"]) for r in rs),
    }


def section(a):
    runs = load_runs(a.manifest)
    impls = [i for i in ("carrot", "kombu", "kombu_wal") if any(k[1] == i for k in runs)]
    # Every shape that ran, in the order the script ran them (known ones first, in order).
    ran = list(dict.fromkeys(k[0] for k in runs))
    shapes = [s for s in SHAPES if s in ran] + [s for s in ran if s not in SHAPES]
    commands = []
    with open(a.commands) as f:
        for line in f:
            commands.append(line.rstrip("\n").split("\t")[2])
    highest = max(max(r["_load"]) for rs in runs.values() for r in rs)
    stats = {k: summary(v) for k, v in runs.items()}
    carrot_n = next((stats[k]["n"] for k in stats if k[1] == "carrot"), 0)
    kombu_n = next((stats[k]["n"] for k in stats if k[1].startswith("kombu")), 0)

    L = []
    w = L.append
    w(BEGIN)
    w("## Durable: persistent messages on SQLite, carrot `sqlite://` against kombu's SQLAlchemy transport")
    w("")
    w("Written by `bench/sqlite_run.sh` from one run: `carrot bench --persistent` on carrot's")
    w("`sqlite://` broker and `bench/peers/kombu_sqlite.py` (kombu's SQLAlchemy transport,")
    w("`sqla+sqlite://`) run the same workload with the same options and print the same JSON:")
    w("P producers and C consumers at once on one fresh queue, persistent 100-byte bodies (each")
    w("carrying its send time), every message acknowledged; published/s = N / time to the last")
    w("publish, consumed/s = N / time to the last ack. Every run is a fresh process on a fresh file")
    w("under /tmp, deleted afterwards; in each round every shape runs every implementation, each")
    w("round starting with the next one. Figures are medians of the rounds, the range in brackets.")
    w("The machine is shared (see the load averages), so compare the ratios rather than the")
    w("absolute figures.")
    w("")
    w("### Machine")
    w("")
    for row in machine():
        w(f"- {row}")
    w(f"- carrot built from the {a.built}")
    w(f"- {a.date}; {a.rounds} rounds, {int(a.elapsed)} s of runs; load average (1, 5, 15 min): "
      f"{a.load_start} at the start, {a.load_end} at the end; the highest 1-min figure before or "
      f"after a run: {highest:.2f}")
    w("")
    w("### Commands")
    w("")
    w("```sh")
    w(f"{a.run_command}   # builds, runs all below, writes this section")
    w(a.build_command)
    for c in commands:
        w(c)
    w("```")
    w("")
    w("`/tmp/FRESH.db`: a new file in a new directory for every run.")
    w("")
    w(f"### Throughput and latency: carrot N = {carrot_n:,}, kombu N = {kombu_n:,} (median of {a.rounds} rounds)")
    w("")
    w(f"kombu runs {kombu_n:,} messages instead of {carrot_n:,}: at its rate {carrot_n:,} would take")
    w("tens of minutes per run. The rates are per second, so they compare: kombu does the same")
    w("work for every message (its own transactions), so a larger N would not raise its rate.")
    w("")
    for s in shapes:
        p, c = s.rstrip("c").split("p")
        w(f"#### `{s}`: {p} producer(s), {c} consumer(s)")
        w("")
        w("| implementation | N | published/s | consumed/s | p50 ms | p99 ms | peak RSS MB | CPU us/msg | 1-min load |")
        w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for i in impls:
            st = stats.get((s, i))
            if not st:
                continue
            w(f"| {LABELS[i]} | {st['n']:,} | {rate_cell(st['published'])} | {rate_cell(st['consumed'])} "
              f"| {ms(st['p50'])} | {ms(st['p99'])} | {st['rss']:.1f} | {st['cpu']:,.0f} | {st['load']:.2f} |")
        w("")
    w("CPU us/msg: user + system CPU of the whole process (setup included) over N. 1-min load:")
    w("the highest 1-min load average read just before or just after this shape's runs.")
    w("")
    w("### Ratios: carrot / kombu (consumed/s, the end-to-end rate; published/s in brackets)")
    w("")
    head = "| shape | carrot / kombu (SQLite defaults) |"
    rule = "| --- | ---: |"
    if "kombu_wal" in impls:
        head += " carrot / kombu (WAL + NORMAL) |"
        rule += " ---: |"
    w(head)
    w(rule)
    for s in shapes:
        car = stats.get((s, "carrot"))
        row = f"| `{s}` |"
        for i in [x for x in impls if x != "carrot"]:
            k = stats.get((s, i))
            if car and k:
                rc = statistics.median(car["consumed"]) / statistics.median(k["consumed"])
                rp = statistics.median(car["published"]) / statistics.median(k["published"])
                row += f" {rc:,.0f}x ({rp:,.0f}x) |"
            else:
                row += " - |"
        w(row)
    w("")
    w(f"### Target (issue 5): at least {TARGET:,} persistent messages/s publish+consume")
    w("")
    best_shape = max(shapes, key=lambda s: statistics.median(stats[(s, "carrot")]["consumed"]))
    best = statistics.median(stats[(best_shape, "carrot")]["consumed"])
    reached = [s for s in shapes if statistics.median(stats[(s, "carrot")]["consumed"]) >= TARGET]
    top_round = max(r["consumed_per_s"] for (s, i), rs in runs.items() if i == "carrot" for r in rs)
    for s in shapes:
        v = statistics.median(stats[(s, "carrot")]["consumed"])
        w(f"- `{s}`: {fmt(v)} msg/s consumed ({v / TARGET:.2f} of the target): "
          f"{'met' if v >= TARGET else '**not met**'}")
    w("")
    if reached:
        w(f"carrot reached {TARGET:,} msg/s consumed (median of the rounds) in "
          f"{', '.join(f'`{s}`' for s in reached)}.")
    else:
        w(f"carrot did **not** reach {TARGET:,} msg/s consumed in any shape: the best median is "
          f"{fmt(best)} msg/s (`{best_shape}`, {best / TARGET:.2f} of the target); the best single "
          f"round {fmt(top_round)} msg/s.")
    w("")
    w("### Notes")
    w("")
    w("- carrot: one `carrot bench` process, a 2-worker tokio runtime, one connection with a channel")
    w("  per producer and consumer; every operation of the process goes to one engine thread that")
    w("  runs overlapping callers' operations in one shared transaction and one commit (group")
    w("  commit). The file is in WAL mode with `synchronous = NORMAL`: a commit is in the WAL (the")
    w("  OS cache) when `send` or `ack` returns, so a killed process loses nothing, a power failure")
    w("  the last commits (see `src/backend/sqlite/schema.rs`).")
    w("- kombu (`bench/peers/kombu_sqlite.py`): a thread with a `kombu.Connection` of its own per")
    w("  producer and consumer (kombu connections are not thread-safe; the threads take turns on the")
    w("  GIL). Its transport commits twice per message: an INSERT per publish, and a `BEGIN")
    w("  IMMEDIATE` transaction (SELECT the oldest visible row, UPDATE it invisible) per delivery;")
    w("  an ack writes nothing (the row stays, invisible: a consumer that dies after the delivery")
    w("  loses the message). It ignores the delivery mode: every message is in the file.")
    w("- kombu with SQLite's defaults (as kombu leaves them) has a rollback journal and")
    w("  `synchronous = FULL`: fsyncs at every commit, so each message waits on the disk twice.")
    w("  The WAL + `synchronous = NORMAL` row gives it carrot's durability level (no fsync per")
    w("  commit), to separate the disk from the per-message cost of the transport itself.")
    w("- kombu's consumers poll: on an empty queue a consumer sleeps `polling_interval` before the")
    w("  next `BEGIN IMMEDIATE`. kombu's default is 1 s; the peer uses 1 ms (0.1 ms, 1 ms, 10 ms and")
    w("  100 ms were tried on a short run: no clear winner in rate, 1 ms the lowest latency; every")
    w("  empty poll takes the write lock, which the producers then wait for). SQLite's busy timeout")
    w("  is 60 s (`connect_args`) instead of pysqlite's 5 s, so that a publish waits for the lock")
    w("  rather than failing with \"database is locked\" when many threads contend.")
    w("- Producers are not throttled: when they outrun the consumers the queue grows, and the")
    w("  latency is mostly the time a message waits in that backlog; the consumed rate is the")
    w("  figure to compare.")
    for sh_ in shapes:
        car = stats.get((sh_, "carrot"))
        if not car:
            continue
        pub, con = statistics.median(car["published"]), statistics.median(car["consumed"])
        if pub > 1.2 * con:
            w(f"- In `{sh_}` carrot's producers outran its consumers ({fmt(pub)} msg/s published,")
            w(f"  {fmt(con)} msg/s consumed): the backlog is what the latency ({ms(car['p50'])} ms at")
            w(f"  p50) and the peak RSS ({car['rss']:.1f} MB) measure.")
    w(END)
    return "\n".join(L) + "\n"


def splice(old, text):
    """`old` with the sqlite section replaced by `text` (appended when it has none)."""
    begin = BEGIN_RE.search(old)
    end = old.find(END)
    if begin and end > begin.start():
        rest = old[end + len(END):].lstrip("\n")
        return old[:begin.start()] + text + ("\n" + rest if rest else "")
    return old.rstrip("\n") + "\n\n" + text


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", required=True)
    p.add_argument("--commands", required=True)
    p.add_argument("--date", required=True)
    p.add_argument("--rounds", type=int, required=True)
    p.add_argument("--elapsed", type=float, required=True)
    p.add_argument("--load-start", required=True)
    p.add_argument("--load-end", required=True)
    p.add_argument("--built", required=True)
    p.add_argument("--run-command", default="bench/sqlite_run.sh")
    p.add_argument("--build-command", default="cargo build --release --bin carrot")
    p.add_argument("--out", default="BENCHMARKS.md")
    a = p.parse_args()
    text = section(a)
    try:
        with open(a.out) as f:
            old = f.read()
    except FileNotFoundError:
        old = "# Benchmarks\n"
    with open(a.out, "w") as f:
        f.write(splice(old, text))


if __name__ == "__main__":
    sys.exit(main())

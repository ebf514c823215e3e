#!/usr/bin/env python3
"""Before/after of the embedded brokers in one run: a base commit against the work tree.

Builds both (the base from `git archive`, in target/compare-base, with this tree's
benches/memory.rs so that both run the same benchmark code), then alternates them, round by
round, on:

- memory://: `publish_consume_one_task`, `_two_tasks`, `_two_threads` and the bare tokio channel
  (`bare_channel_two_tasks`, the physical limit) of benches/memory.rs (criterion), and
  benches/memory_hold.rs (peak RSS with 1,000,000 queued 100-byte messages);
- sqlite://: `carrot bench --persistent` with 1 producer / 1 consumer and 16 / 16 (each send
  waits for its commit), and 1 / 1 with a window of 64 confirms in flight (`--confirm
  --confirm-window 64`), each on a fresh file in a fresh directory under /tmp.

Then writes the section between `<!-- embedded:begin -->` and `<!-- embedded:end -->` of
BENCHMARKS.md (appended if missing); the rest of the file is kept.

    python3 bench/embedded_compare.py --base e3909f2 [--rounds 3] [--messages 100000]
"""

import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEMORY = ["publish_consume_one_task", "publish_consume_two_tasks", "publish_consume_two_threads", "bare_channel_two_tasks"]
CRITERION = ["--bench", "--warm-up-time", "1", "--measurement-time", "3"]
# (name, producers, consumers, extra flags)
SQLITE = [
    ("1p1c", 1, 1, []),
    ("16p16c", 16, 16, []),
    ("1p1c_window64", 1, 1, ["--confirm", "--confirm-window", "64"]),
]
TARGETS = {  # share of the bare channel, from the issue
    "publish_consume_one_task": 1.00,
    "publish_consume_two_tasks": 0.60,
    "publish_consume_two_threads": 0.50,
}
SQLITE_TARGETS = {"1p1c": 25_000, "16p16c": 80_000}
BEGIN, END = "<!-- embedded:begin -->", "<!-- embedded:end -->"


def run(cmd, cwd=ROOT, env=None, capture=True):
    full_env = dict(os.environ, **(env or {}))
    out = subprocess.run(cmd, cwd=cwd, env=full_env, check=True, text=True,
                         stdout=subprocess.PIPE if capture else None, stderr=subprocess.STDOUT if capture else None)
    return out.stdout if capture else ""


def bench_executable(manifest_dir, target_dir, bench):
    """Builds a bench and returns its executable (cargo's JSON messages name it)."""
    out = run(["cargo", "bench", "--bench", bench, "--no-run", "--message-format", "json",
               "--manifest-path", os.path.join(manifest_dir, "Cargo.toml")],
              env={"CARGO_TARGET_DIR": target_dir})
    for line in out.splitlines():
        if not line.startswith("{"):
            continue
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == bench and msg.get("executable"):
            return msg["executable"]
    sys.exit(f"no executable for bench {bench}")


def build(manifest_dir, target_dir):
    run(["cargo", "build", "--release", "--bin", "carrot", "--all-features",
         "--manifest-path", os.path.join(manifest_dir, "Cargo.toml")], env={"CARGO_TARGET_DIR": target_dir})
    return {
        "memory": bench_executable(manifest_dir, target_dir, "memory"),
        "memory_hold": bench_executable(manifest_dir, target_dir, "memory_hold"),
        "carrot": os.path.join(target_dir, "release", "carrot"),
    }


def copy_binaries(bins, into):
    os.makedirs(into, exist_ok=True)
    kept = {}
    for name, path in bins.items():
        dest = os.path.join(into, name)
        shutil.copy2(path, dest)
        kept[name] = dest
    return kept


THRPT = re.compile(r"thrpt:\s+\[\S+ \S+ (\S+) (\S+)")


def criterion_rates(exe):
    """msgs/s (criterion's mean) of each MEMORY function."""
    pattern = "|".join(MEMORY)
    out = run([exe, *CRITERION, pattern], env={"CRITERION_HOME": tempfile.mkdtemp(prefix="carrot-criterion-")})
    rates, current = {}, None
    for line in out.splitlines():
        m = re.match(r"memory_100B/(\S+)", line.strip())
        if m:
            current = m.group(1)
        t = THRPT.search(line)
        if t and current in MEMORY and current not in rates:
            value, unit = float(t.group(1)), t.group(2)
            rates[current] = value * {"elem/s": 1, "Kelem/s": 1e3, "Melem/s": 1e6, "Gelem/s": 1e9}[unit]
    missing = set(MEMORY) - set(rates)
    if missing:
        sys.exit(f"criterion output lacks {missing}:\n{out}")
    return rates


def hold_mb(exe):
    out = run([exe, "--bench"])
    line = [l for l in out.splitlines() if l.startswith("{")][-1]
    return json.loads(line)["peak_rss_mb"]


def sqlite_rate(carrot, producers, consumers, extra, messages):
    d = tempfile.mkdtemp(prefix="carrot-compare-")
    try:
        out = run([carrot, "--url", f"sqlite://{d}/bench.db", "bench", "--persistent", "--json",
                   "--messages", str(messages), "--size", "100", "--producers", str(producers),
                   "--consumers", str(consumers), "--prefetch", "1000", *extra])
        result = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
        # End to end: the slower of publishing and consuming.
        return min(result["published_per_s"], result["consumed_per_s"])
    finally:
        shutil.rmtree(d, ignore_errors=True)


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def fmt(v):
    return f"{v:,.0f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, help="the commit to compare against")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--messages", type=int, default=100_000, help="sqlite messages per run")
    ap.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    args = ap.parse_args()

    base_commit = run(["git", "rev-parse", args.base + "^{commit}"]).strip()
    head_commit = run(["git", "rev-parse", "HEAD"]).strip()
    dirty = run(["git", "status", "--porcelain", "--", "src", "benches", "Cargo.toml", "Cargo.lock"]).strip()
    work = tempfile.mkdtemp(prefix="carrot-compare-src-")
    src = os.path.join(work, "base")
    os.makedirs(src)
    archive = subprocess.run(["git", "archive", base_commit], cwd=ROOT, check=True, stdout=subprocess.PIPE).stdout
    subprocess.run(["tar", "-x", "-C", src], input=archive, check=True)
    shutil.copy2(os.path.join(ROOT, "benches", "memory.rs"), os.path.join(src, "benches", "memory.rs"))
    print("== building the base", base_commit, flush=True)
    base = copy_binaries(build(src, os.path.join(ROOT, "target", "compare-base")), os.path.join(work, "bin-base"))
    print("== building the work tree", flush=True)
    head = copy_binaries(build(ROOT, os.path.join(ROOT, "target")), os.path.join(work, "bin-head"))

    load_start, started = load(), time.time()
    results = {"base": {"memory": [], "hold": [], "sqlite": []}, "head": {"memory": [], "hold": [], "sqlite": []}}
    for r in range(args.rounds):
        order = [("base", base), ("head", head)] if r % 2 == 0 else [("head", head), ("base", base)]
        for name, bins in order:
            print(f"== round {r + 1}: {name} memory", flush=True)
            results[name]["memory"].append(criterion_rates(bins["memory"]))
            results[name]["hold"].append(hold_mb(bins["memory_hold"]))
            rates = {}
            for shape, p, c, extra in SQLITE:
                print(f"== round {r + 1}: {name} sqlite {shape}", flush=True)
                rates[shape] = sqlite_rate(bins["carrot"], p, c, extra, args.messages)
            results[name]["sqlite"].append(rates)
    minutes = (time.time() - started) / 60

    def med(name, kind, key=None):
        values = results[name][kind]
        return statistics.median(v[key] for v in values) if key else statistics.median(values)

    lines = [BEGIN, "## Embedded brokers before and after the shared channel layer (issue 10)", ""]
    lines += [
        f"Written by `python3 bench/embedded_compare.py --base {args.base} --rounds {args.rounds} --messages {args.messages}`",
        f"on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC: the base is commit `{base_commit[:10]}` (before),",
        f"the work tree is `{head_commit[:10]}`{' with uncommitted changes' if dirty else ''} (after); both built in release mode and run",
        f"alternately, {args.rounds} rounds, medians shown ({minutes:.0f} minutes; load average {load_start} at the start,",
        f"{load()} at the end). The base runs this tree's benches/memory.rs, so both run the same benchmark code.",
        "",
        "### memory://: against a bare in-process channel",
        "",
        "criterion (`cargo bench --bench memory -- --warm-up-time 1 --measurement-time 3`), 10,000 messages of",
        "100 bytes per iteration. The physical limit is `bare_channel_two_tasks`: a tokio unbounded mpsc",
        "channel moving fresh copies of the same 100-byte body from one task to another on a 2-worker",
        "runtime, with no broker at all, measured in the same run.",
        "",
        "| workload | before msgs/s | after msgs/s | after / before | after / bare channel | target |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    bare = med("head", "memory", "bare_channel_two_tasks")
    for f in MEMORY:
        b, h = med("base", "memory", f), med("head", "memory", f)
        share = h / bare
        target = TARGETS.get(f)
        verdict = "" if target is None else f"{target:.0%} of the bare channel: {'met' if share >= target else '**not met**'}"
        lines.append(f"| `{f}` | {fmt(b)} | {fmt(h)} | {h / b:.2f} | {share:.0%} | {verdict} |")
    hb, hh = med("base", "hold"), med("head", "hold")
    lines += [
        "",
        f"Peak RSS with 1,000,000 queued 100-byte messages (`cargo bench --bench memory_hold`): {hb:.1f} MB before,",
        f"{hh:.1f} MB after (target: under 300 MB: {'met' if hh < 300 else '**not met**'}).",
        "",
        "### sqlite://: persistent 100-byte messages, end to end",
        "",
        f"`carrot --url sqlite://FILE bench --persistent --json --messages {args.messages} --size 100 --producers P --consumers C --prefetch 1000`",
        "(end to end: the lower of the publish and consume rates; each consumer acknowledges every message, and",
        "an acknowledgement returns once committed).",
        "",
        "| shape | before msgs/s | after msgs/s | after / before | target |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for shape, p, c, extra in SQLITE:
        b, h = med("base", "sqlite", shape), med("head", "sqlite", shape)
        target = SQLITE_TARGETS.get(shape)
        verdict = "" if target is None else f"{fmt(target)} msgs/s: {'met' if h >= target else '**not met**'}"
        flags = " ".join(extra)
        lines.append(f"| {shape} {('(`' + flags + '`)') if flags else ''} | {fmt(b)} | {fmt(h)} | {h / b:.2f} | {verdict} |")
    lines += ["", "Every round's figures:", "", "```"]
    for name in ("base", "head"):
        for i in range(args.rounds):
            mem = ", ".join(f"{k}={fmt(v)}" for k, v in results[name]["memory"][i].items())
            sq = ", ".join(f"{k}={fmt(v)}" for k, v in results[name]["sqlite"][i].items())
            lines.append(f"{name} r{i + 1}: {mem}; hold={results[name]['hold'][i]:.1f} MB; {sq}")
    lines += ["```", END]
    section = "\n".join(lines) + "\n"

    text = open(args.out).read() if os.path.exists(args.out) else ""
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END) + 1:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(args.out, "w") as f:
        f.write(text)
    print(section)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes the "`carrot bench` against its peers" section of BENCHMARKS.md from one run of
bench/cli_run.sh: the JSON each run of `carrot bench`, bench/peers/lapin_peer.rs,
bench/peers/pika_cli.py and bench/peers/kombu_cli.py printed (listed in the run's manifest).

Only the part between the markers below is replaced (appended when missing), so the sections
the other scripts write (bench/report.py, bench/amqp_report.py, bench/sqlite_report.py) stay as
they are; each of them keeps this one in turn.
"""

import argparse
import json
import os
import re
import statistics
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import fmt, machine  # noqa: E402

BEGIN = "<!-- cli:begin: written by bench/cli_report.py (bench/cli_run.sh); keep the markers -->"
END = "<!-- cli:end -->"
BEGIN_RE = re.compile(r"<!-- cli:begin[^>]*-->")

# Below this fraction of raw lapin's rate, carrot is called slower than lapin.
LAPIN_FLOOR = 0.9

# The targets of pipelined confirms (one publisher, persistent messages, a window of confirms
# in flight): carrot at least this fraction of raw lapin with the same window, and at least
# this many times pika's confirm-each rate, measured in the same run.
WINDOW_LAPIN_TARGET = 0.95
WINDOW_PIKA_TARGET = 10

CLIENTS = {
    "carrot": "`carrot bench` (carrot's `Publisher` / `Consumer`)",
    "lapin": "raw lapin (`bench/peers/lapin_peer.rs`)",
    "pika": "pika `BlockingConnection` (`bench/peers/pika_cli.py`)",
    "kombu": "kombu `Producer` / `Consumer` (`bench/peers/kombu_cli.py`)",
}


def redact(url):
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        userinfo, host = rest.rsplit("@", 1)
        return f"{scheme}://{userinfo.split(':')[0]}:***@{host}"
    return url


def lapin_version(root):
    try:
        with open(os.path.join(root, "Cargo.lock")) as f:
            m = re.search(r'name = "lapin"\nversion = "([^"]+)"', f.read())
        return m.group(1) if m else "?"
    except OSError:
        return "?"


def python_versions():
    try:
        import amqp
        import kombu
        import pika
        return f"pika {pika.__version__}, kombu {kombu.__version__} (py-amqp {amqp.__version__})"
    except ImportError:
        return "pika ?, kombu ?"


def broker_version(url):
    """RabbitMQ's product, version and platform, from its connection.start."""
    try:
        from kombu import Connection
        with Connection(url) as conn:
            conn.connect()
            props = conn.connection.server_properties
        text = lambda v: v.decode() if isinstance(v, bytes) else str(v)  # noqa: E731
        return (f"{text(props.get('product', 'RabbitMQ'))} {text(props.get('version', '?'))} "
                f"on {text(props.get('platform', '?'))}")
    except Exception as e:  # noqa: BLE001 - the report still gets written
        return f"RabbitMQ (version unknown: {e})"


def window(r):
    """The confirms a producer keeps in flight: 1 for confirm-each (the Python peers, which
    have no window, print no `confirm_window`)."""
    return r.get("confirm_window", 1)


def confirms(r):
    if not r["confirm"]:
        return ""
    if window(r) > 1:
        return f"publisher confirms, a window of {window(r)} in flight per producer"
    return "publisher confirms (each awaited)"


def describe(r):
    kind = "persistent, durable queue" if r["persistent"] else "transient"
    confirm = f", {confirms(r)}" if r["confirm"] else ""
    return (f"{r['messages']:,} x {r['size']} B, {r['producers']} producer(s), "
            f"{r['consumers']} consumer(s), prefetch {r['prefetch']}, {kind}{confirm}")


def differences(first, other):
    """How a client's workload differs from the first client's (the one in the heading)."""
    diff = []
    if other["messages"] != first["messages"]:
        diff.append(f"{other['messages']:,} messages")
    if other["confirm"] and window(other) != window(first):
        diff.append("confirm-each (no window: each publish waits for its confirm)"
                    if window(other) == 1 else confirms(other))
    return ", ".join(diff)


def latency_possible(r):
    """False when the recorded max latency is below a bound the run itself proves: the last
    message consumed was published before the last publish returned and acked at the end,
    so it waited at least (consumed time - published time)."""
    published_s = r["messages"] / r["published_per_s"] if r["published_per_s"] else 0
    floor_ms = (r["elapsed_s"] - published_s) * 1000
    return r["latency_ms"]["max"] >= floor_ms * 0.99 - 0.05


def median(values):
    return statistics.median(values) if values else None


def ratio(a, b, digits=2):
    if a is None or not b:
        return "-"
    return f"{a / b:.{digits}f}"


def load_runs(manifest):
    runs = {}  # (workload, impl) -> list of result dicts
    order = []
    loads = []
    with open(manifest) as f:
        for line in f:
            name, imp, rnd, path, load, cpu = line.rstrip("\n").split("\t")
            with open(path) as j:
                result = json.load(j)
            result["_round"] = int(rnd)
            result["_cpu_us_per_msg"] = float(cpu) * 1e6 / max(result["messages"], 1)
            runs.setdefault((name, imp), []).append(result)
            if name not in order:
                order.append(name)
            loads.append(load)
    return runs, order, loads


def summarize(results):
    pub = [r["published_per_s"] for r in results]
    con = [r["consumed_per_s"] for r in results]
    valid = all(latency_possible(r) for r in results)
    rss = [r["peak_rss_mb"] for r in results if r.get("peak_rss_mb") is not None]
    return {
        "published": median(pub), "published_range": (min(pub), max(pub)),
        "consumed": median(con), "consumed_range": (min(con), max(con)),
        "p50": median([r["latency_ms"]["p50"] for r in results]),
        "p99": median([r["latency_ms"]["p99"] for r in results]),
        "latency_valid": valid,
        "rss": median(rss),
        "cpu": median([r["_cpu_us_per_msg"] for r in results]),
    }


def ms(v):
    if v is None:
        return "-"
    return f"{v:,.3f}" if v < 10 else f"{v:,.0f}"


def section(a):
    runs, order, loads = load_runs(a.manifest)
    commands = {}
    with open(a.commands) as f:
        for line in f:
            name, imp, cmd = line.rstrip("\n").split("\t")
            commands[(name, imp)] = cmd
    m = machine()
    if a.date:
        m["date"] = a.date
    amqp_used = any(r[0]["url"].startswith("amqp") for r in runs.values())
    lines = []
    w = lines.append
    w(BEGIN)
    w("## `carrot bench` against its peers: raw lapin, pika, kombu")
    w("")
    w("Written by `bench/cli_run.sh` from one run: the `carrot` CLI's `bench` and a peer for each")
    w("client library (`bench/peers/`) run the same workload with the same options and print the same")
    w("JSON: P producers and C consumers at once on one fresh queue, each producer and consumer on a")
    w("channel of its own, every message acknowledged; each body carries its send time. Every run is a")
    w("fresh process; in each round every workload runs every client, and each round starts with the")
    w("next client, so that none always runs first. Figures are medians of the rounds, the range in")
    w("brackets. Broker and clients share the machine's cores, and the machine is shared (see the load")
    w("averages), so compare the ratios rather than the absolute figures.")
    w("")
    w("### Machine and broker")
    w("")
    w(f"- {m['cores']} cores (nproc), {m['cpu']}, {m['memory']} RAM")
    w(f"- {m['os']}")
    w(f"- {m['rustc']}; lapin {lapin_version(a.root)}; {python_versions()} on Python "
      f"{sys.version.split()[0]}")
    if amqp_used:
        w(f"- {broker_version(a.url)}, at `{redact(a.url)}` (loopback), on the same cores as the clients")
    w(f"- {m['date']}; {a.rounds} rounds, {a.seconds} s of runs; load average (1, 5, 15 min): "
      f"{a.load_start} at the start, {a.load_end} at the end; the highest 1-min figure after a run: "
      f"{max((float(x.split()[0]) for x in loads), default=0):.2f}")
    w("")
    w("### Commands")
    w("")
    w("```sh")
    only = f"CLI_ONLY='{a.only}' " if a.only else ""
    w(f"CLI_N={a.n} CLI_M={a.m} CLI_W={a.w} CLI_WP={a.wp} CLI_MEMORY_N={a.memory_n} "
      f"CLI_ROUNDS={a.rounds} {only}bench/cli_run.sh   # builds, runs all below, writes this section")
    w("cargo build --release --bin carrot --example lapin_peer")
    for name in order:
        for imp in CLIENTS:
            if (name, imp) in commands:
                w(commands[(name, imp)])
    w("```")
    w("")
    w("### Results")
    w("")
    w("published/s = N / time until the last publish returned; consumed/s = N / time until the last")
    w("ack (the end-to-end rate); latency = send to delivery, over all messages; peak RSS = the")
    w("process's `VmHWM` (MiB); client CPU = user + system CPU of the client process (the shell's")
    w("`time`, start-up included; RabbitMQ's is not counted) over N. Ratios are carrot's rate over the")
    w("client's: above 1, carrot is faster.")
    w("")
    flagged = set()
    summaries = {}
    for name in order:
        present = [imp for imp in CLIENTS if (name, imp) in runs]
        first = runs[(name, present[0])][0]
        w(f"#### `{name}`: {describe(first)}, `{first['url']}`")
        w("")
        others = [(imp, differences(first, runs[(name, imp)][0])) for imp in present[1:]]
        others = [(imp, d) for imp, d in others if d]
        if others:
            w("Except: " + "; ".join(f"{imp}: {d}" for imp, d in others)
              + " (rates are per second, so they compare).")
            w("")
        w("| client | published/s | consumed/s | latency p50 ms | p99 ms | peak RSS MB | client CPU us/msg | carrot / client, published | carrot / client, consumed |")
        w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        s = {imp: summarize(runs[(name, imp)]) for imp in present}
        summaries[name] = s
        c = s.get("carrot")
        for imp in present:
            x = s[imp]
            lat50, lat99 = ms(x["p50"]), ms(x["p99"])
            if not x["latency_valid"]:
                flagged.add(imp)
                lat50 = lat99 = "invalid (a)"
            rng = lambda r: f"[{fmt(r[0])} - {fmt(r[1])}]"  # noqa: E731
            rp = ratio(c["published"], x["published"]) if c and imp != "carrot" else ""
            rc = ratio(c["consumed"], x["consumed"]) if c and imp != "carrot" else ""
            if imp == "lapin" and c:
                # Judged on the figure shown (2 decimals), so that a bold 0.90 cannot happen.
                if float(rp) < LAPIN_FLOOR:
                    rp = f"**{rp}**"
                if float(rc) < LAPIN_FLOOR:
                    rc = f"**{rc}**"
            rss = f"{x['rss']:.1f}" if x["rss"] is not None else "-"
            w(f"| {imp} | {fmt(x['published'])} {rng(x['published_range'])} | "
              f"{fmt(x['consumed'])} {rng(x['consumed_range'])} | {lat50} | {lat99} | {rss} | "
              f"{x['cpu']:.1f} | {rp} | {rc} |")
        w("")
    w("### Ratios: carrot / peer (consumed/s, the end-to-end rate; published/s in brackets)")
    w("")
    peers = [imp for imp in CLIENTS if imp != "carrot" and any(imp in s for s in summaries.values())]
    w("| workload | " + " | ".join(f"carrot / {p}" for p in peers) + " |")
    w("| --- | " + " | ".join("---:" for _ in peers) + " |")
    slow = []
    for name in order:
        s = summaries[name]
        c = s.get("carrot")
        cells = []
        for p in peers:
            if p not in s or not c:
                cells.append("-")
                continue
            rc, rp = c["consumed"] / s[p]["consumed"], c["published"] / s[p]["published"]
            digits = 2 if p == "lapin" else 1
            cell = f"{rc:.{digits}f} ({rp:.{digits}f})"
            if p == "lapin" and min(round(rc, 2), round(rp, 2)) < LAPIN_FLOOR:
                cell = f"**{cell}**"
                slow.append(name)
            cells.append(cell)
        w(f"| `{name}` | " + " | ".join(cells) + " |")
    w("")
    if slow:
        w(f"Bold: carrot below {LAPIN_FLOOR} of raw lapin ({', '.join(f'`{n}`' for n in slow)}).")
    else:
        w(f"carrot is at least {LAPIN_FLOOR} of raw lapin in every workload.")
    w("")
    window_targets(w, order, runs, summaries)
    w("### Notes")
    w("")
    w("- carrot and lapin: one connection, a channel per producer and consumer, a 2-worker tokio")
    w("  runtime (the `carrot` binary's). lapin is written as fast as it goes with carrot's semantics:")
    w("  `basic_publish(..).await` per message (with `--confirm`, its confirm awaited before the")
    w("  next publish, as carrot's `send` does; with `--confirm-window W`, up to W confirms in")
    w("  flight, the oldest awaited when W are pending, as carrot's bench does with")
    w("  `Publisher::begin_publish` and its `PendingConfirm`s; a message counts as published when its")
    w("  confirm arrives), acks handed to lapin without waiting for each to be written (as carrot's")
    w("  `Message::ack`), the same properties on the wire (`application/data`, `binary`, delivery")
    w("  mode).")
    w("- pika and kombu: neither shares a connection between threads, so each producer and consumer is")
    w("  a thread with a connection of its own; the threads take turns on the GIL. Neither has a")
    w("  window of confirms: a pika `BlockingConnection` in `confirm_delivery` mode, and a kombu")
    w("  `Producer` with `confirm_publish`, wait for each confirm, so in the `confirm_window*`")
    w("  workloads they run confirm-each (without `--confirm-window`), on fewer messages (`CLI_WP`:")
    w("  at confirm-each rates, `CLI_W` would take minutes); published/s and consumed/s are rates per")
    w("  second, so they compare across message counts.")
    w("- `memory://`: carrot's embedded broker in the `carrot bench` process against kombu's in-process")
    w("  memory transport (threads; consumers poll the queue every 0.1 ms, see `kombu_cli.py`). No")
    w("  RabbitMQ, no network: the ratio is client plus broker against client plus broker.")
    w("- Producers are not throttled: when they outrun the consumers the queue grows, and the latency")
    w("  is mostly the time a message waits in that backlog (it grows with N). RabbitMQ shares the two")
    w("  cores with the clients and works harder on a growing queue, so a faster publisher can leave a")
    w("  slower consumed rate. Runs settle in one of two regimes, publishers far ahead (a growing")
    w("  queue, latency in seconds) or held near the consumers' pace (latency in milliseconds), for")
    w("  any client alike, so published/s swings most from run to run: consumed/s is the end-to-end")
    w("  figure to compare, and client CPU per message the one that depends least on the load.")
    if flagged:
        w(f"- (a) invalid latency ({', '.join(sorted(flagged))}): the recorded maximum is below the wait")
        w("  the run itself proves (the last message was acked `elapsed_s - N / published_per_s` after the")
        w("  last publish returned), so the histogram lost the large values; left out here. (hdrhistogram's")
        w("  `saturating_record` on an auto-resizing histogram does that: it clamps instead of growing.)")
    w(END)
    return "\n".join(lines) + "\n"


def window_targets(w, order, runs, summaries):
    """The targets of pipelined confirms, on each workload where carrot keeps a window of
    confirms in flight with one persistent publisher and lapin ran with the same window; the
    pika target where pika ran too (confirm-each)."""
    judged = []
    for name in order:
        s = summaries[name]
        if not all(k in s for k in ("carrot", "lapin")):
            continue
        carrot, lapin = runs[(name, "carrot")][0], runs[(name, "lapin")][0]
        if not (carrot["confirm"] and window(carrot) > 1 and window(lapin) == window(carrot)
                and carrot["producers"] == 1 and carrot["persistent"]):
            continue
        pika = runs[(name, "pika")][0] if "pika" in s else None
        with_pika = pika is not None and pika["confirm"] and window(pika) == 1
        judged.append((name, window(carrot), s, with_pika))
    if not judged:
        return
    w("### Targets: pipelined confirms")
    w("")
    w("One publisher, persistent messages with publisher confirms, a window of confirms in flight:")
    w(f"carrot at least {WINDOW_LAPIN_TARGET} of raw lapin with the same window, and at least "
      f"{WINDOW_PIKA_TARGET}x pika's")
    w("confirm-each rate, both from this run (the medians above). Judged on published/s (a")
    w("message counts as published when its confirm arrives) and on consumed/s (end to end); a")
    w("target is met when both ratios, as shown, reach it.")
    w("")
    w("| workload | window | carrot / lapin, published (consumed) | "
      f">= {WINDOW_LAPIN_TARGET} | carrot / pika, published (consumed) | >= {WINDOW_PIKA_TARGET}x |")
    w("| --- | ---: | ---: | --- | ---: | --- |")
    verdicts = []
    for name, win, s, with_pika in judged:
        c, l = s["carrot"], s["lapin"]
        rl = (round(c["published"] / l["published"], 2), round(c["consumed"] / l["consumed"], 2))
        ok_l = min(rl) >= WINDOW_LAPIN_TARGET
        if with_pika:
            p = s["pika"]
            rp = (round(c["published"] / p["published"], 1), round(c["consumed"] / p["consumed"], 1))
            ok_p = min(rp) >= WINDOW_PIKA_TARGET
            pika_cells = f"{rp[0]:.1f} ({rp[1]:.1f}) | {'met' if ok_p else '**not met**'}"
        else:
            ok_p = None
            pika_cells = "- | (pika not run)"
        verdicts.append((name, ok_l, ok_p))
        w(f"| `{name}` | {win} | {rl[0]:.2f} ({rl[1]:.2f}) | {'met' if ok_l else '**not met**'} | "
          f"{pika_cells} |")
    w("")
    for name, ok_l, ok_p in verdicts:
        if ok_l and ok_p is not False:
            w(f"- `{name}`: {'both targets' if ok_p else 'the lapin target'} met.")
        else:
            missed = [t for t, ok in ((f"{WINDOW_LAPIN_TARGET} of lapin", ok_l),
                                      (f"{WINDOW_PIKA_TARGET}x pika", ok_p)) if ok is False]
            w(f"- `{name}`: not met: {' and '.join(missed)}.")
    w("")
    w("The same carrot / lapin ratio round by round (published/s; in each round the two ran one")
    w("after the other, so a change of the machine's load between rounds cancels out), and the")
    w("ratio of the client CPU per message (medians; the figure the load moves least; above 1,")
    w("carrot spends more CPU per message than lapin): a check on the medians above, not the")
    w("verdict.")
    w("")
    for name, _, _, _ in judged:
        c = {r["_round"]: r["published_per_s"] for r in runs[(name, "carrot")]}
        l = {r["_round"]: r["published_per_s"] for r in runs[(name, "lapin")]}
        paired = [(n, c[n] / l[n]) for n in sorted(c) if n in l and l[n]]
        if paired:
            below = sum(1 for _, x in paired if round(x, 2) < WINDOW_LAPIN_TARGET)
            cpu = summaries[name]["carrot"]["cpu"] / summaries[name]["lapin"]["cpu"]
            w(f"- `{name}`: " + ", ".join(f"round {n} {x:.2f}" for n, x in paired)
              + f"; median {median([x for _, x in paired]):.2f}; {below} of {len(paired)} rounds"
              f" below {WINDOW_LAPIN_TARGET}; client CPU per message, carrot / lapin: {cpu:.2f}")
    w("")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--manifest", required=True, help="runs.tsv of bench/cli_run.sh")
    p.add_argument("--commands", required=True, help="commands.tsv of bench/cli_run.sh")
    p.add_argument("--url", required=True, help="the RabbitMQ URL (shown without its password)")
    p.add_argument("--rounds", required=True)
    p.add_argument("--seconds", default="?")
    p.add_argument("--load-start", default="?")
    p.add_argument("--load-end", default="?")
    p.add_argument("--n", default="?", help="CLI_N of the run, for the command shown")
    p.add_argument("--m", default="?", help="CLI_M of the run")
    p.add_argument("--w", default="?", help="CLI_W of the run")
    p.add_argument("--wp", default="?", help="CLI_WP of the run")
    p.add_argument("--only", default="", help="CLI_ONLY of the run (a partial run)")
    p.add_argument("--date", default="", help="when the run was (default: now)")
    p.add_argument("--memory-n", default="?", help="CLI_MEMORY_N of the run")
    p.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    p.add_argument("--out", required=True)
    a = p.parse_args()

    text = section(a)
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

#!/usr/bin/env python3
"""What a run costs Redis per message: runs the command given (a `carrot bench` or the bare
loop of bench/peers/redis_peer.rs, with `--messages N`) and prints the CPU time the Redis
server spent per message (`INFO cpu`: user and system, before and after; sockets included),
then Redis's own time per command (`INFO commandstats`, reset first: a script's or a
transaction's time includes the commands it runs, which are also listed apart).

    python3 bench/redis_cost.py redis://127.0.0.1:6389/0 20000 -- target/release/carrot bench \\
        --url redis://127.0.0.1:6389/0 --messages 20000 --producers 4 --consumers 4 --json

Needs python3 with redis (`pip install redis`) and a Redis that nothing else uses meanwhile.
"""

import subprocess
import sys

import redis


def cpu(client):
    info = client.info("cpu")
    return info["used_cpu_user"] + info["used_cpu_sys"]


def main():
    if "--" not in sys.argv or sys.argv.index("--") != 3:
        sys.exit(__doc__)
    url, messages = sys.argv[1], int(sys.argv[2])
    command = sys.argv[4:]
    client = redis.Redis.from_url(url)
    client.config_resetstat()
    before = cpu(client)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    spent = cpu(client) - before
    stats = client.info("commandstats")
    print(f"{' '.join(command[:2])}: {messages} messages, Redis CPU {spent * 1e6 / messages:.2f} us/message")
    rows = [
        (name[len("cmdstat_"):], s["calls"], s["usec"])
        for name, s in stats.items()
        if not name.startswith(("cmdstat_config", "cmdstat_info"))
    ]
    for name, calls, usec in sorted(rows, key=lambda r: -r[2]):
        print(f"  {name:<14} {calls / messages:>6.2f} calls/message {usec / max(calls, 1):>7.2f} us/call")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""kombu's RPC pattern, the peer of bench/services.rs's RPC figures: a kombu server (a Consumer
that publishes each reply to the request's reply_to with its correlation_id) and a kombu client
(an exclusive reply queue, Producer.publish with reply_to and correlation_id, drain_events until
the reply), one caller, sequential calls. Prints {"rpc_1_caller": calls per second}.

Usage: kombu_rpc.py URL [--calls 2000]
"""

import json
import sys
import threading
import time
import uuid

from kombu import Connection, Consumer, Producer, Queue

QUEUE = "kombu-bench.rpc"


def serve(url, ready, stop):
    with Connection(url) as conn, conn.channel() as channel:
        producer = Producer(channel)

        def on_request(body, message):
            producer.publish(body, exchange="", routing_key=message.properties["reply_to"],
                             correlation_id=message.properties["correlation_id"])
            message.ack()

        with Consumer(channel, queues=[Queue(QUEUE, durable=True)], callbacks=[on_request]):
            ready.set()
            while not stop.is_set():
                try:
                    conn.drain_events(timeout=0.2)
                except TimeoutError:
                    pass


def main():
    url = sys.argv[1]
    calls = int(sys.argv[sys.argv.index("--calls") + 1]) if "--calls" in sys.argv else 2000
    ready, stop = threading.Event(), threading.Event()
    server = threading.Thread(target=serve, args=(url, ready, stop), daemon=True)
    server.start()
    ready.wait(30)
    replies = Queue(str(uuid.uuid4()), exclusive=True, auto_delete=True)
    got = {}
    with Connection(url) as conn, conn.channel() as channel:
        producer = Producer(channel)
        with Consumer(channel, queues=[replies], no_ack=True,
                      callbacks=[lambda body, m: got.__setitem__(m.properties["correlation_id"], body)]):
            started = time.perf_counter()
            for n in range(calls):
                cid = str(uuid.uuid4())
                producer.publish({"n": n}, exchange="", routing_key=QUEUE, reply_to=replies.name,
                                 correlation_id=cid)
                while cid not in got:
                    conn.drain_events(timeout=10)
                del got[cid]
            rate = calls / (time.perf_counter() - started)
    stop.set()
    server.join(5)
    print(json.dumps({"rpc_1_caller": rate}))


if __name__ == "__main__":
    main()

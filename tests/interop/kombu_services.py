#!/usr/bin/env python3
"""kombu's side of carrot's SimpleQueue and RPC interoperability tests (tests/kombu_services.rs).

    kombu_services.py simple-put URL NAME N   kombu's SimpleQueue(NAME).put({"from": "kombu", "n": i})
    kombu_services.py simple-get URL NAME N   takes N messages with SimpleQueue(NAME).get(timeout=20),
                                              acks them, prints each payload as a JSON line
    kombu_services.py rpc-call URL QUEUE N    kombu's RPC pattern: requests {"n": i} to QUEUE with
                                              reply_to (an exclusive reply queue) and correlation_id;
                                              prints each reply's payload as a JSON line
    kombu_services.py rpc-serve URL QUEUE N   answers N requests of QUEUE with {"n": n * 2}, to their
                                              reply_to with their correlation_id
"""

import json
import sys
import uuid

from kombu import Connection, Consumer, Producer, Queue


def simple_put(conn, name, count):
    queue = conn.SimpleQueue(name)
    for n in range(count):
        queue.put({"from": "kombu", "n": n})
    queue.close()


def simple_get(conn, name, count):
    queue = conn.SimpleQueue(name)
    for _ in range(count):
        message = queue.get(timeout=20)
        print(json.dumps(message.payload), flush=True)
        message.ack()
    queue.close()


def rpc_call(conn, queue, count):
    replies = Queue(str(uuid.uuid4()), exclusive=True, auto_delete=True)
    got = {}

    def on_reply(body, message):
        got[message.properties["correlation_id"]] = body

    with conn.channel() as channel:
        producer = Producer(channel)
        with Consumer(channel, queues=[replies], callbacks=[on_reply], no_ack=True):
            for n in range(count):
                correlation_id = str(uuid.uuid4())
                producer.publish(
                    {"n": n},
                    exchange="",
                    routing_key=queue,
                    reply_to=replies.name,
                    correlation_id=correlation_id,
                )
                while correlation_id not in got:
                    conn.drain_events(timeout=20)
                print(json.dumps(got.pop(correlation_id)), flush=True)


def rpc_serve(conn, queue, count):
    requests = Queue(queue, durable=True)
    answered = [0]
    with conn.channel() as channel:
        producer = Producer(channel)

        def on_request(body, message):
            producer.publish(
                {"n": body["n"] * 2},
                exchange="",
                routing_key=message.properties["reply_to"],
                correlation_id=message.properties["correlation_id"],
            )
            message.ack()
            answered[0] += 1

        with Consumer(channel, queues=[requests], callbacks=[on_request]):
            print("ready", flush=True)
            while answered[0] < count:
                conn.drain_events(timeout=30)


def main():
    mode, url, name, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    with Connection(url) as conn:
        {"simple-put": simple_put, "simple-get": simple_get, "rpc-call": rpc_call, "rpc-serve": rpc_serve}[mode](
            conn, name, count
        )


if __name__ == "__main__":
    main()

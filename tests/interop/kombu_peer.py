#!/usr/bin/env python3
"""kombu's side of carrot's wire-compatibility tests (tests/kombu_interop.rs).

    kombu_peer.py consume --url URL --queue Q --count N [--max-priority 9] [--timeout 20]
        Takes N messages from the queue (basic.get, acked) and prints one JSON line each:
        {"body_kind": "data" | "text" | "bytes", "body": ..., "content_type": ...,
         "content_encoding": ..., "headers": {...}, "priority": ..., "delivery_mode": ...}
        where body is what kombu's message.decode() gives: the decoded data for
        application/json, the text for text/plain, and for bytes their hex digits.

    kombu_peer.py publish --url URL --queue Q [--max-priority 9] < messages.jsonl
        Publishes one message per JSON line read from stdin, with kombu's Producer and
        publisher confirms, to the default exchange with the queue's name as routing key:
        {"kind": "json" | "text" | "bytes", "body": data | text | hex digits,
         "headers": {...}, "priority": 5, "delivery_mode": 1 | 2}
        json goes through kombu's json serializer, text as text/plain utf-8, bytes as
        application/data binary. Prints how many it published.

Both declare the queue as carrot's test does: durable, with x-max-priority when given.
The URL is carrot's (amqp://guest:guest@127.0.0.1:5672/%2F); kombu reads it as it is.
"""

import argparse
import json
import sys
import time

from kombu import Connection, Exchange, Producer, Queue

ACCEPT = ["application/json", "text/plain", "application/data"]


def queue_for(args):
    arguments = {"x-max-priority": args.max_priority} if args.max_priority is not None else None
    return Queue(
        args.queue,
        exchange=Exchange(""),
        routing_key=args.queue,
        durable=True,
        queue_arguments=arguments,
    )


def describe(message):
    body = message.decode()
    if isinstance(body, (bytes, bytearray)):
        kind, body = "bytes", bytes(body).hex()
    elif message.content_type == "application/json":
        kind = "data"
    elif isinstance(body, str):
        kind = "text"
    else:
        kind = "data"
    return {
        "body_kind": kind,
        "body": body,
        "content_type": message.content_type,
        "content_encoding": message.content_encoding,
        "headers": message.headers,
        "priority": message.properties.get("priority"),
        "delivery_mode": message.properties.get("delivery_mode"),
    }


def consume(args):
    with Connection(args.url, connect_timeout=args.timeout) as conn:
        queue = queue_for(args)(conn.default_channel)
        queue.declare()
        deadline = time.monotonic() + args.timeout
        taken = 0
        while taken < args.count:
            message = queue.get(no_ack=False, accept=ACCEPT)
            if message is None:
                if time.monotonic() > deadline:
                    sys.exit(f"kombu_peer: {taken} of {args.count} messages within {args.timeout} s")
                time.sleep(0.05)
                continue
            print(json.dumps(describe(message), ensure_ascii=False), flush=True)
            message.ack()
            taken += 1


def publish(args):
    specs = [json.loads(line) for line in sys.stdin if line.strip()]
    with Connection(
        args.url, connect_timeout=args.timeout, transport_options={"confirm_publish": True}
    ) as conn:
        channel = conn.default_channel
        queue = queue_for(args)(channel)
        queue.declare()
        producer = Producer(channel, exchange=Exchange(""), routing_key=args.queue)
        for spec in specs:
            options = {"headers": spec.get("headers") or {}}
            for key in ("priority", "delivery_mode"):
                if spec.get(key) is not None:
                    options[key] = spec[key]
            kind = spec["kind"]
            if kind == "json":
                producer.publish(spec["body"], serializer="json", **options)
            elif kind == "text":
                producer.publish(
                    spec["body"], content_type="text/plain", content_encoding="utf-8", **options
                )
            elif kind == "bytes":
                producer.publish(
                    bytes.fromhex(spec["body"]),
                    content_type="application/data",
                    content_encoding="binary",
                    **options,
                )
            else:
                sys.exit(f"kombu_peer: unknown kind {kind!r}: use json, text or bytes")
    print(len(specs))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("consume", "publish"):
        command = commands.add_parser(name)
        command.add_argument("--url", required=True, help="amqp://user:password@host:port/vhost")
        command.add_argument("--queue", required=True)
        command.add_argument("--max-priority", type=int, default=None)
        command.add_argument("--timeout", type=float, default=20.0, help="seconds")
        if name == "consume":
            command.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    consume(args) if args.command == "consume" else publish(args)


if __name__ == "__main__":
    main()

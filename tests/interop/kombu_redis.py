#!/usr/bin/env python3
"""kombu's (and Celery's) side of carrot's Redis interoperability tests (tests/kombu_redis.rs),
on kombu's Redis transport. Every subcommand takes the redis:// URL first; what it reads it
prints on stdout, one JSON document a line.

    kombu_redis.py raw URL KEY
        the elements of the list KEY (LRANGE 0 -1, newest first), each as a JSON string
    kombu_redis.py publish URL QUEUE BODY [--headers JSON] [--correlation-id ID] [--reply-to Q]
        [--priority P]...
        kombu's Producer.publish(BODY, exchange="", routing_key=QUEUE, serializer="json",
        delivery_mode=2, headers=..., correlation_id=..., reply_to=...), in that keyword order;
        with --priority, one message {"n": i} per priority given, in order
    kombu_redis.py get-all URL QUEUE
        Queue(QUEUE).get() until the queue is empty, acking each; prints
        {"body", "headers", "priority", "routing_key"} of each
    kombu_redis.py consume URL QUEUE [--idle S]
        a kombu Consumer on QUEUE: prints "ready" once consuming, then each body (acked) as it
        comes, until no message came for S seconds
    kombu_redis.py topic-bind URL EXCHANGE QUEUE KEY...
        declares the topic exchange EXCHANGE (kombu's Exchange defaults) and QUEUE bound to it
        with each KEY
    kombu_redis.py topic-publish URL EXCHANGE KEY...
        declares EXCHANGE as topic in this process, publishes {"key": KEY} with each KEY
    kombu_redis.py fanout-consume URL EXCHANGE QUEUE [--count N] [--timeout S]
        consumes QUEUE bound to the fanout EXCHANGE (kombu subscribes with PSUBSCRIBE); prints
        "ready" after consume() and one drain_events attempt, then each body, until N came or
        S seconds passed
    kombu_redis.py fanout-publish URL EXCHANGE N
        declares EXCHANGE as fanout in this process, publishes {"n": i} for i in 0..N (kombu
        PUBLISHes each on the exchange's channel only)
    kombu_redis.py celery-send URL QUEUE
        Celery's app.send_task("tasks.add", (2, 3), queue=QUEUE), no worker; prints the task id
"""

import argparse
import json
import socket
import sys
import time

from kombu import Connection, Consumer, Exchange, Producer, Queue


def raw(args):
    import redis

    client = redis.Redis.from_url(args.url)
    for element in client.lrange(args.key, 0, -1):
        print(json.dumps(element.decode("utf-8")), flush=True)


def publish(args):
    headers = json.loads(args.headers) if args.headers is not None else None
    extra = {}
    # kombu writes the extra properties in the order of the call's keywords.
    if args.correlation_id is not None:
        extra["correlation_id"] = args.correlation_id
    if args.reply_to is not None:
        extra["reply_to"] = args.reply_to
    with Connection(args.url) as conn, conn.channel() as channel:
        producer = Producer(channel)
        if args.priority:
            for n, priority in enumerate(args.priority):
                producer.publish(
                    {"n": n},
                    exchange="",
                    routing_key=args.queue,
                    serializer="json",
                    delivery_mode=2,
                    priority=priority,
                    headers=headers,
                    **extra,
                )
        else:
            producer.publish(
                json.loads(args.body),
                exchange="",
                routing_key=args.queue,
                serializer="json",
                delivery_mode=2,
                headers=headers,
                **extra,
            )


def get_all(args):
    with Connection(args.url) as conn, conn.channel() as channel:
        queue = Queue(args.queue)(channel)
        while True:
            message = queue.get()
            if message is None:
                break
            print(
                json.dumps(
                    {
                        "body": message.decode(),
                        "headers": message.headers,
                        "priority": message.properties.get("priority"),
                        "routing_key": message.delivery_info.get("routing_key"),
                    }
                ),
                flush=True,
            )
            message.ack()


def consume(args):
    with Connection(args.url) as conn:

        def on_message(body, message):
            print(json.dumps(body), flush=True)
            message.ack()

        with conn.Consumer(Queue(args.queue), callbacks=[on_message]):
            print("ready", flush=True)
            while True:
                try:
                    conn.drain_events(timeout=args.idle)
                except socket.timeout:
                    break


def topic_bind(args):
    exchange = Exchange(args.exchange, "topic")
    with Connection(args.url) as conn, conn.channel() as channel:
        queue = Queue(args.queue, exchange=exchange, routing_key=args.keys[0])(channel)
        queue.declare()
        for key in args.keys[1:]:
            queue.bind_to(exchange, key)


def topic_publish(args):
    # kombu keeps exchange types per process: declare it here as what it is.
    exchange = Exchange(args.exchange, "topic")
    with Connection(args.url) as conn, conn.channel() as channel:
        producer = Producer(channel, exchange=exchange)
        for key in args.keys:
            producer.publish({"key": key}, routing_key=key, serializer="json")


def fanout_consume(args):
    exchange = Exchange(args.exchange, "fanout")
    got = []
    with Connection(args.url) as conn:

        def on_message(body, message):
            got.append(body)
            print(json.dumps(body), flush=True)
            message.ack()

        with conn.Consumer(Queue(args.queue, exchange=exchange), callbacks=[on_message]) as consumer:
            consumer.consume()
            try:
                conn.drain_events(timeout=0.2)
            except socket.timeout:
                pass
            print("ready", flush=True)
            deadline = time.monotonic() + args.timeout
            while len(got) < args.count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    conn.drain_events(timeout=min(left, 1.0))
                except socket.timeout:
                    pass


def fanout_publish(args):
    exchange = Exchange(args.exchange, "fanout")
    with Connection(args.url) as conn, conn.channel() as channel:
        producer = Producer(channel, exchange=exchange)
        for n in range(args.n):
            producer.publish({"n": n}, routing_key="", serializer="json")


def celery_send(args):
    from celery import Celery

    app = Celery("tasks", broker=args.url)
    result = app.send_task("tasks.add", (2, 3), queue=args.queue)
    print(json.dumps(result.id), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("raw")
    p.add_argument("url")
    p.add_argument("key")
    p.set_defaults(run=raw)

    p = sub.add_parser("publish")
    p.add_argument("url")
    p.add_argument("queue")
    p.add_argument("body", nargs="?", default="null")
    p.add_argument("--headers")
    p.add_argument("--correlation-id")
    p.add_argument("--reply-to")
    p.add_argument("--priority", type=int, action="append")
    p.set_defaults(run=publish)

    p = sub.add_parser("get-all")
    p.add_argument("url")
    p.add_argument("queue")
    p.set_defaults(run=get_all)

    p = sub.add_parser("consume")
    p.add_argument("url")
    p.add_argument("queue")
    p.add_argument("--idle", type=float, default=1.0)
    p.set_defaults(run=consume)

    p = sub.add_parser("topic-bind")
    p.add_argument("url")
    p.add_argument("exchange")
    p.add_argument("queue")
    p.add_argument("keys", nargs="+")
    p.set_defaults(run=topic_bind)

    p = sub.add_parser("topic-publish")
    p.add_argument("url")
    p.add_argument("exchange")
    p.add_argument("keys", nargs="+")
    p.set_defaults(run=topic_publish)

    p = sub.add_parser("fanout-consume")
    p.add_argument("url")
    p.add_argument("exchange")
    p.add_argument("queue")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--timeout", type=float, default=20.0)
    p.set_defaults(run=fanout_consume)

    p = sub.add_parser("fanout-publish")
    p.add_argument("url")
    p.add_argument("exchange")
    p.add_argument("n", type=int)
    p.set_defaults(run=fanout_publish)

    p = sub.add_parser("celery-send")
    p.add_argument("url")
    p.add_argument("queue")
    p.set_defaults(run=celery_send)

    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    sys.exit(main())

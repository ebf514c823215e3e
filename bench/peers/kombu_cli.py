#!/usr/bin/env python3
"""kombu on the workload of `carrot bench` (same options, same JSON keys), on RabbitMQ
(`amqp://`, py-amqp transport) or on kombu's in-process `memory://` transport.

- producers: a thread each, with a `kombu.Connection` of its own (kombu connections are not
  thread-safe) and a `Producer` on the default exchange; `Producer.publish` of each body as it
  is (`content_type="application/data"`, `content_encoding="binary"`, so no serializer runs),
  routing key = the queue, delivery mode 1 (2 with --persistent); with --confirm the
  connection has `transport_options={"confirm_publish": True}`, so each publish returns once
  the broker confirmed (amqp:// only: the memory transport has no confirms);
- consumers: a thread each, with a connection of its own and a `Consumer` (`qos(prefetch)`,
  a callback that calls `message.ack()`), driven by `Connection.drain_events(timeout=0.1)`
  until the N-th message is acked;
- `memory://`: kombu's memory transport keeps its queues per process and lets threads pass
  messages; its consumers poll the queues and sleep `polling_interval` when they are empty
  (kombu's default is 1 s, which would make every wait a second long). This peer sets
  `--polling-interval` (default 0.0001 s, 0.1 ms, the best of 1 ms, 0.1 ms and 0 measured
  on this workload; the value is on stderr).

    python3 bench/peers/kombu_cli.py --url amqp://guest:guest@127.0.0.1:5672/%2F --messages 50000 --json
    python3 bench/peers/kombu_cli.py --url memory:// --messages 50000 --json

The driver and what is measured are in bench/peers/cli_common.py.
"""

import os
import socket
import sys

from kombu import Connection, Consumer, Exchange, Producer, Queue

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli_common as common  # noqa: E402

DEFAULT_EXCHANGE = Exchange("")
POLLING_INTERVAL = float(os.environ.get("KOMBU_POLLING_INTERVAL", "0.0001"))


class KombuProducer:
    def __init__(self, client, queue, persistent, confirm):
        self.conn = client.connection(confirm)
        self.producer = Producer(self.conn.channel(), exchange=DEFAULT_EXCHANGE, routing_key=queue)
        self.queue = queue
        self.mode = 2 if persistent else 1

    def send(self, body):
        self.producer.publish(body, routing_key=self.queue, content_type=common.CONTENT_TYPE,
                              content_encoding=common.CONTENT_ENCODING, delivery_mode=self.mode)

    def close(self):
        self.conn.release()


class KombuConsumer:
    def __init__(self, client, queue, prefetch):
        self.conn = client.connection(False)
        self.handlers = None
        self.stopped = False

        def on_message(body, message):
            handle, acked = self.handlers
            handle(body)
            message.ack()
            acked()

        q = Queue(queue, exchange=DEFAULT_EXCHANGE, routing_key=queue, no_declare=True)
        self.consumer = Consumer(self.conn.channel(), queues=[q], callbacks=[on_message],
                                 accept=[common.CONTENT_TYPE], auto_declare=False)
        self.consumer.qos(prefetch_count=prefetch)
        # Subscribed now, before the clock starts, as carrot's and lapin's consumers are.
        self.consumer.consume()

    def run(self, handle, acked, done):
        self.handlers = (handle, acked)
        drain = self.conn.drain_events
        while not (self.stopped or done.is_set()):
            try:
                drain(timeout=0.1)
            except socket.timeout:
                pass

    def stop(self):
        self.stopped = True

    def close(self):
        self.consumer.cancel()
        self.conn.release()


class KombuClient(common.Client):
    name = "kombu"

    def __init__(self, url):
        self.url = url
        self.memory = url.startswith("memory://")
        if self.memory:
            print(f"kombu memory://: polling_interval {POLLING_INTERVAL} s", file=sys.stderr)
        self.admin_conn = self.connection(False)
        self.admin = self.admin_conn.channel()

    def connection(self, confirm):
        options = {}
        if confirm and not self.memory:
            options["confirm_publish"] = True
        if self.memory:
            options["polling_interval"] = POLLING_INTERVAL
        conn = Connection(self.url, transport_options=options)
        conn.connect()
        return conn

    def declare(self, queue, durable):
        self.admin.queue_declare(queue=queue, durable=durable, auto_delete=False)

    def delete(self, queue):
        self.admin.queue_delete(queue=queue)

    def producer(self, queue, persistent, confirm):
        return KombuProducer(self, queue, persistent, confirm)

    def consumer(self, queue, prefetch):
        return KombuConsumer(self, queue, prefetch)

    def close(self):
        self.admin_conn.release()


if __name__ == "__main__":
    common.run(KombuClient, __doc__.splitlines()[0])

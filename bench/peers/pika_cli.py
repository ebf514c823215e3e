#!/usr/bin/env python3
"""pika's BlockingConnection on the workload of `carrot bench` (same options, same JSON keys).

- producers: a thread each, with a `BlockingConnection` and channel of its own (pika is not
  thread-safe: one connection per thread is how it is used); `basic_publish` of each body to
  the default exchange with routing key = the queue, `application/data`, `binary`, delivery
  mode 1 (2 with --persistent); with --confirm the channel is in `confirm_delivery()` mode, so
  each `basic_publish` returns once the broker confirmed;
- consumers: a thread each, with a connection and channel of their own, `basic_qos(prefetch)`,
  `basic_consume` with a callback that calls `basic_ack` (which does not wait for the broker),
  driven by `start_consuming`; stopped with `add_callback_threadsafe(stop_consuming)` once the
  N-th message is acked.

    python3 bench/peers/pika_cli.py --url amqp://guest:guest@127.0.0.1:5672/%2F \\
        --messages 50000 --producers 2 --consumers 2 --json

The driver and what is measured are in bench/peers/cli_common.py.
"""

import os
import sys

import pika
import pika.exceptions

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli_common as common  # noqa: E402


class Producer:
    def __init__(self, params, queue, persistent, confirm):
        self.conn = pika.BlockingConnection(params)
        self.channel = self.conn.channel()
        if confirm:
            self.channel.confirm_delivery()
        self.queue = queue
        self.properties = pika.BasicProperties(
            content_type=common.CONTENT_TYPE,
            content_encoding=common.CONTENT_ENCODING,
            delivery_mode=2 if persistent else 1,
        )

    def send(self, body):
        self.channel.basic_publish("", self.queue, body, self.properties)

    def close(self):
        self.conn.close()


class Consumer:
    def __init__(self, params, queue, prefetch):
        self.conn = pika.BlockingConnection(params)
        self.channel = self.conn.channel()
        self.channel.basic_qos(prefetch_count=prefetch)
        self.queue = queue
        self.handlers = None

        def on_message(channel, method, properties, body):
            handle, acked = self.handlers
            handle(body)
            channel.basic_ack(method.delivery_tag)
            acked()

        # Subscribed now, before the clock starts, as carrot's and lapin's consumers are.
        self.channel.basic_consume(queue, on_message)

    def run(self, handle, acked, done):
        self.handlers = (handle, acked)
        if not done.is_set():
            self.channel.start_consuming()

    def stop(self):
        try:
            self.conn.add_callback_threadsafe(self.channel.stop_consuming)
        except pika.exceptions.AMQPError:
            pass  # already closed: nothing to stop

    def close(self):
        self.conn.close()


class PikaClient(common.Client):
    name = "pika"

    def __init__(self, url):
        self.params = pika.URLParameters(url)
        self.admin_conn = pika.BlockingConnection(self.params)
        self.admin = self.admin_conn.channel()

    def declare(self, queue, durable):
        self.admin.queue_declare(queue, durable=durable)

    def delete(self, queue):
        self.admin.queue_delete(queue)

    def producer(self, queue, persistent, confirm):
        return Producer(self.params, queue, persistent, confirm)

    def consumer(self, queue, prefetch):
        return Consumer(self.params, queue, prefetch)

    def close(self):
        self.admin_conn.close()


if __name__ == "__main__":
    common.run(PikaClient, __doc__.splitlines()[0])

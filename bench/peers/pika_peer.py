#!/usr/bin/env python3
"""pika's BlockingConnection on the workloads of benches/amqp.rs (the peer carrot must beat 3x).

- publish: `basic_publish` of N 100-byte bodies (`application/data`, `binary`, delivery mode 1)
  to a fresh non-durable queue through the default exchange;
- consume: `basic_qos(prefetch_count=1000)`, `basic_consume` + `start_consuming`, a callback
  that calls `basic_ack` (which does not wait for the broker) for each message;
- publish_consume: a consumer thread (own connection, subscribed before the clock starts) and
  the publisher on the main thread at once; N / time until the last message is consumed;
- confirm_*: the same with `confirm_delivery()` (each `basic_publish` waits for its confirm),
  delivery mode 2 and a durable queue, M messages.

    python3 bench/peers/pika_peer.py --messages 100000 --confirm-messages 10000 --rounds 3
"""

import os
import sys
import threading
import time

import pika

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


class PikaPeer(common.Peer):
    name = "pika"
    version = pika.__version__
    notes = {
        "client": "pika.BlockingConnection",
        "publish_consume": "consumer on a thread and connection of its own; publisher on the main thread",
    }

    def __init__(self, url):
        self.params = pika.URLParameters(url)
        self.admin_conn = pika.BlockingConnection(self.params)
        self.admin = self.admin_conn.channel()

    def declare(self, queue, durable):
        self.admin.queue_declare(queue, durable=durable)

    def ready(self, queue):
        return self.admin.queue_declare(queue, passive=True).method.message_count

    def delete(self, queue):
        return self.admin.queue_delete(queue).method.message_count

    def close(self):
        self.admin_conn.close()

    def _properties(self, confirm):
        return pika.BasicProperties(
            content_type=common.CONTENT_TYPE,
            content_encoding=common.CONTENT_ENCODING,
            delivery_mode=2 if confirm else 1,
        )

    def _send_all(self, channel, queue, n, confirm):
        props = self._properties(confirm)
        body = common.BODY
        publish = channel.basic_publish
        for _ in range(n):
            publish("", queue, body, props)

    def publish(self, queue, n, confirm):
        conn = pika.BlockingConnection(self.params)
        channel = conn.channel()
        if confirm:
            channel.confirm_delivery()
        start = time.perf_counter()
        self._send_all(channel, queue, n, confirm)
        elapsed = time.perf_counter() - start
        conn.close()
        return elapsed

    def _subscribe(self, queue, n, done):
        """A connection and channel consuming `queue`; calls done() after the n-th ack."""
        conn = pika.BlockingConnection(self.params)
        channel = conn.channel()
        channel.basic_qos(prefetch_count=common.PREFETCH)
        count = 0

        def on_message(ch, method, properties, body):
            nonlocal count
            len(body)
            ch.basic_ack(method.delivery_tag)
            count += 1
            if count == n:
                done()
                ch.stop_consuming()

        channel.basic_consume(queue, on_message)
        return conn, channel

    def consume(self, queue, n):
        start = time.perf_counter()
        end = []
        conn, channel = self._subscribe(queue, n, lambda: end.append(time.perf_counter()))
        channel.start_consuming()
        conn.close()
        return end[0] - start

    def publish_consume(self, queue, n, confirm):
        ready = threading.Event()
        end = []
        failure = []

        def consumer():
            try:
                conn, channel = self._subscribe(queue, n, lambda: end.append(time.perf_counter()))
                ready.set()
                channel.start_consuming()
                conn.close()
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                failure.append(e)
                ready.set()

        thread = threading.Thread(target=consumer)
        thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        conn = pika.BlockingConnection(self.params)
        channel = conn.channel()
        if confirm:
            channel.confirm_delivery()
        start = time.perf_counter()
        self._send_all(channel, queue, n, confirm)
        thread.join()
        conn.close()
        if failure:
            raise failure[0]
        return end[0] - start


if __name__ == "__main__":
    args = common.arguments(__doc__.splitlines()[0])
    common.main(PikaPeer(args.url), args)

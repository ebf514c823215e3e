#!/usr/bin/env python3
"""kombu (py-amqp transport) on the workloads of benches/amqp.rs (the peer carrot must beat 3x).

- publish: `Producer.publish` of N 100-byte bodies, sent as they are (`application/data`,
  `binary`, delivery mode 1), to a fresh non-durable queue through the default exchange;
- consume: `Consumer` with `qos(prefetch_count=1000)`, a callback that calls `message.ack()`,
  `Connection.drain_events`;
- publish_consume: a consumer thread (own connection, subscribed before the clock starts) and
  the publisher on the main thread at once; N / time until the last message is consumed;
- confirm_*: the same on a connection with `transport_options={"confirm_publish": True}`
  (each publish waits for its confirm), delivery mode 2 and a durable queue, M messages.

    python3 bench/peers/kombu_peer.py --messages 100000 --confirm-messages 10000 --rounds 3
"""

import os
import sys
import threading
import time

import amqp
import kombu
from kombu import Connection, Consumer, Exchange, Producer, Queue

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

DEFAULT_EXCHANGE = Exchange("")


class KombuPeer(common.Peer):
    name = "kombu"
    version = kombu.__version__
    notes = {
        "client": f"kombu.Producer / kombu.Consumer on py-amqp {amqp.__version__}",
        "publish_consume": "consumer on a thread and connection of its own; publisher on the main thread",
    }

    def __init__(self, url):
        self.url = url
        self.admin_conn = Connection(url)
        self.admin = self.admin_conn.channel()
        server = self.admin_conn.connection.server_properties
        text = lambda v: v.decode() if isinstance(v, bytes) else str(v)  # noqa: E731
        self.notes = dict(self.notes, broker=f"{text(server.get('product', 'RabbitMQ'))} "
                          f"{text(server.get('version', '?'))} on {text(server.get('platform', '?'))}")

    def declare(self, queue, durable):
        self.admin.queue_declare(queue=queue, durable=durable, auto_delete=False)

    def ready(self, queue):
        return self.admin.queue_declare(queue=queue, passive=True).message_count

    def delete(self, queue):
        return self.admin.queue_delete(queue=queue)

    def close(self):
        self.admin_conn.release()

    def _connection(self, confirm):
        options = {"confirm_publish": True} if confirm else {}
        conn = Connection(self.url, transport_options=options)
        conn.connect()
        return conn

    def _send_all(self, conn, queue, n, confirm):
        producer = Producer(conn.channel(), exchange=DEFAULT_EXCHANGE, routing_key=queue)
        publish = producer.publish
        body = common.BODY
        mode = 2 if confirm else 1
        for _ in range(n):
            publish(body, routing_key=queue, content_type=common.CONTENT_TYPE,
                    content_encoding=common.CONTENT_ENCODING, delivery_mode=mode)

    def publish(self, queue, n, confirm):
        conn = self._connection(confirm)
        start = time.perf_counter()
        self._send_all(conn, queue, n, confirm)
        elapsed = time.perf_counter() - start
        conn.release()
        return elapsed

    def _drain(self, conn, queue, n, on_subscribed=None):
        """Consumes n messages of `queue`; returns the time the n-th was acked."""
        count = 0

        def on_message(body, message):
            nonlocal count
            len(body)
            message.ack()
            count += 1

        q = Queue(queue, exchange=DEFAULT_EXCHANGE, routing_key=queue, no_declare=True)
        consumer = Consumer(conn.channel(), queues=[q], callbacks=[on_message],
                            accept=[common.CONTENT_TYPE], auto_declare=False)
        consumer.qos(prefetch_count=common.PREFETCH)
        with consumer:
            if on_subscribed:
                on_subscribed()
            while count < n:
                conn.drain_events(timeout=60)
            return time.perf_counter()

    def consume(self, queue, n):
        conn = self._connection(False)
        start = time.perf_counter()
        end = self._drain(conn, queue, n)
        conn.release()
        return end - start

    def publish_consume(self, queue, n, confirm):
        ready = threading.Event()
        end = []
        failure = []

        def consumer():
            try:
                conn = self._connection(False)
                end.append(self._drain(conn, queue, n, on_subscribed=ready.set))
                conn.release()
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                failure.append(e)
                ready.set()

        thread = threading.Thread(target=consumer)
        thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        conn = self._connection(confirm)
        start = time.perf_counter()
        self._send_all(conn, queue, n, confirm)
        thread.join()
        conn.release()
        if failure:
            raise failure[0]
        return end[0] - start


if __name__ == "__main__":
    args = common.arguments(__doc__.splitlines()[0])
    common.main(KombuPeer(args.url), args)

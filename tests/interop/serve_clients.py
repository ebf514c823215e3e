#!/usr/bin/env python3
"""Real clients against `carrot serve` (tests/serve.rs): pika and kombu, unmodified.

    serve_clients.py pika --url URL --queue Q
        pika's BlockingConnection: publisher confirms, a mandatory message no queue takes
        (returned), basic_publish + basic_get, basic_consume, basic_nack with requeue (the
        message comes again, redelivered), basic_ack; exits 0 and prints "ok" when all hold.

    serve_clients.py rpc --url URL --queue Q
        pika and RabbitMQ's direct reply-to (amq.rabbitmq.reply-to): the misuses refused
        (a publish with it and no reply consumer, a reply consumer that acknowledges, a second
        one), the pseudo-queue declared passively, and a request answered on the address the
        server saw; prints what happened, line by line, to compare with RabbitMQ's.

    serve_clients.py kombu --url URL --queue Q
        kombu's SimpleQueue (put / get / ack / qsize; then put, get, clear and queue.delete
        while its consumer is there, which needs queue.delete-ok before the consumer's
        basic.cancel, as RabbitMQ sends them) and Producer / Consumer with drain_events;
        exits 0 and prints "ok" when all hold.
"""

import argparse
import sys
import time


def check(condition, what):
    if not condition:
        sys.exit(f"serve_clients.py: {what}")


def pika_client(url, queue):
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare(queue=queue, durable=True)
    returned = []
    channel.add_on_return_callback(lambda ch, method, props, body: returned.append(body))
    try:
        channel.basic_publish("", queue + ".nowhere", b"lost", mandatory=True)
        check(False, "a mandatory message no queue takes was confirmed without a return")
    except pika.exceptions.UnroutableError:
        pass
    for n in range(3):
        channel.basic_publish(
            "",
            queue,
            f"m{n}".encode(),
            pika.BasicProperties(delivery_mode=2, content_type="text/plain", headers={"n": n}),
        )
    method, props, body = channel.basic_get(queue)
    check(body == b"m0" and props.headers == {"n": 0}, f"basic_get gave {body!r} {props.headers!r}")
    check(method.message_count == 2, f"message_count {method.message_count}")
    channel.basic_ack(method.delivery_tag)
    seen = []

    def on_message(ch, method, props, body):
        seen.append((body, method.redelivered))
        if body == b"m1" and not method.redelivered:
            ch.basic_nack(method.delivery_tag, requeue=True)
        else:
            ch.basic_ack(method.delivery_tag)
        if len([b for b, _ in seen if b != b"m1" or _]) >= 2:
            ch.stop_consuming()

    channel.basic_qos(prefetch_count=10)
    channel.basic_consume(queue, on_message)
    deadline = time.monotonic() + 10
    while len(seen) < 3 and time.monotonic() < deadline:
        connection.process_data_events(time_limit=0.2)
    check((b"m1", True) in seen, f"the nacked message did not come again redelivered: {seen}")
    check((b"m2", False) in seen, f"m2 missing: {seen}")
    channel.queue_delete(queue)
    connection.close()


def rpc_client(url, queue):
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    try:
        channel.basic_publish("", queue, b"x", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to"))
        channel.queue_declare("amq.rabbitmq.reply-to", passive=True)
        print("publish without a reply consumer: accepted")
    except pika.exceptions.ChannelClosedByBroker as e:
        print("publish without a reply consumer:", e.reply_code, e.reply_text)
        channel = connection.channel()
    try:
        channel.basic_consume("amq.rabbitmq.reply-to", lambda *a: None, auto_ack=False)
        print("reply consumer with acks: accepted")
    except pika.exceptions.ChannelClosedByBroker as e:
        print("reply consumer with acks:", e.reply_code, e.reply_text)
        channel = connection.channel()
    declared = channel.queue_declare("amq.rabbitmq.reply-to", passive=True).method
    print("passive declare:", declared.queue, declared.message_count, declared.consumer_count)
    server = connection.channel()
    server.queue_declare(queue, auto_delete=True)
    replies = []
    channel.basic_consume("amq.rabbitmq.reply-to", lambda c, m, p, b: replies.append(b), auto_ack=True)
    channel.basic_publish("", queue, b"ping", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to"))
    deadline = time.monotonic() + 10
    method, props, body = server.basic_get(queue, auto_ack=True)
    while method is None and time.monotonic() < deadline:
        connection.process_data_events(time_limit=0.05)
        method, props, body = server.basic_get(queue, auto_ack=True)
    check(method is not None, "the request never reached the server's queue")
    address = props.reply_to
    print("address:", address.startswith("amq.rabbitmq.reply-to.") and len(address) > 22)
    server.basic_publish("", address, b"pong:" + body)
    while not replies and time.monotonic() < deadline:
        connection.process_data_events(time_limit=0.05)
    print("reply:", replies)
    try:
        channel.basic_consume("amq.rabbitmq.reply-to", lambda *a: None, auto_ack=True)
        print("a second reply consumer: accepted")
    except pika.exceptions.ChannelClosedByBroker as e:
        print("a second reply consumer:", e.reply_code, e.reply_text)
    connection.close()


def kombu_client(url, queue):
    from kombu import Connection, Consumer, Exchange, Producer, Queue

    with Connection(url, connect_timeout=10) as conn:
        simple = conn.SimpleQueue(queue)
        simple.put({"hello": "carrot"}, serializer="json")
        message = simple.get(block=True, timeout=5)
        check(message.payload == {"hello": "carrot"}, f"SimpleQueue gave {message.payload!r}")
        message.ack()
        check(simple.qsize() == 0, "the queue is not empty")
        simple.close()

        exchange = Exchange(queue + ".x", type="topic", durable=False)
        target = Queue(queue + ".t", exchange=exchange, routing_key="a.#", durable=False, auto_delete=True)
        channel = conn.channel()
        received = []
        consumer = Consumer(channel, [target], callbacks=[lambda body, m: (received.append(body), m.ack())])
        consumer.consume()
        producer = Producer(conn.channel(), exchange=exchange)
        for key in ("a.b", "c.d", "a.c.d"):
            producer.publish({"key": key}, routing_key=key, serializer="json")
        deadline = time.monotonic() + 10
        while len(received) < 2 and time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=0.5)
            except TimeoutError:
                pass
            except Exception as e:  # socket.timeout on older Pythons
                if "timed out" not in str(e):
                    raise
        check(sorted(b["key"] for b in received) == ["a.b", "a.c.d"], f"topic routing gave {received}")
        consumer.cancel()
        conn.channel().queue_delete(queue)

    # Deleting a queue under its own consumer (a connection of its own: the broker's
    # basic.cancel that follows would be raised by the next call on this one, on RabbitMQ too):
    # queue.delete-ok must come before that basic.cancel, as RabbitMQ sends them.
    with Connection(url, connect_timeout=10) as conn:
        deleted = conn.SimpleQueue(queue + ".deleted")
        deleted.put({"n": 1})
        deleted.put({"n": 2})
        deleted.get(block=True, timeout=5).ack()
        deleted.clear()
        deleted.queue.delete()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("client", choices=["pika", "kombu", "rpc"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--queue", required=True)
    args = parser.parse_args()
    clients = {"pika": pika_client, "kombu": kombu_client, "rpc": rpc_client}
    clients[args.client](args.url, args.queue)
    print("ok")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""kombu's side of carrot's serializer x compression matrix (tests/kombu_matrix.rs).

    kombu_matrix.py publish --url URL --queue Q [--timeout 20] < cells.jsonl
        Publishes one message per JSON line read from stdin, with kombu's Producer and
        publisher confirms, to the default exchange with the queue's name as routing key:
        {"cell": "msgpack/zstd",
         "serializer": "json" | "msgpack" | "yaml" | "pickle" | "text" | "bytes",
         "compression": null | "gzip" | "bzip2" | "lzma" | "brotli" | "zstd" (or any alias
                        or content type kombu.compression knows),
         "body": CANONICAL,
         "properties": {"correlation_id": ..., "reply_to": ..., "expiration": "60000",
                        "message_id": ..., "timestamp": 1700000000, "type": ...,
                        "user_id": ..., "app_id": ..., "headers": {...},
                        "priority": 5, "delivery_mode": 1 | 2}}
        json, msgpack, yaml and pickle go through kombu's serializer of that name; text is
        published as text/plain utf-8 and bytes as application/data binary (kombu's raw
        path); compression is kombu's (`Producer.publish(compression=...)`, which compresses
        the serialized body and names the compression's content type in the `compression`
        header). Every property given is set; headers gain {"cell": cell}. Prints how many
        it published.

    kombu_matrix.py consume --url URL --queue Q --count N [--timeout 20]
        Takes N messages from the queue (basic.get, acked, accepting every content type
        above) and prints one JSON line each (ASCII, every other character escaped, so that
        no U+2028 or U+0085 in a body splits a line for a reader that splits on them):
        {"cell": headers["cell"], "body": CANONICAL of message.decode(),
         "content_type": ..., "content_encoding": ..., "compression": headers["compression"],
         "properties": {every property listed above but headers, null when absent},
         "headers": {...}}
        When kombu cannot decompress or decode a message, or its body holds something
        outside the canonical form, the line has "error" (what kombu raised) instead of
        "body", so that the caller sees which cell failed and why.

Both declare the queue durable, as carrot's Consumer and QueueSpec do by default.

CANONICAL is a JSON rendering of a Python value that tells apart what JSON does not (ints
and floats, str and bytes, dict keys of any type) and compares floats by their bits, so that
two sides compare values with `==` on JSON:

    None             -> null
    bool             -> true / false
    int              -> {"$int": "<decimal digits, with - when negative>"}
    float            -> {"$float": "<16 hex digits>"}: struct.pack('>d', x).hex(), the
                        IEEE-754 bits big-endian (Rust: format!("{:016x}", x.to_bits())), so
                        NaN equals NaN and 0.0 differs from -0.0
    str              -> a JSON string
    bytes, bytearray -> {"$bytes": "<hex digits>"}
    list, tuple      -> a JSON array (a tuple reads back as a list)
    dict             -> {"$map": [[key, value], ...]}, key and value canonical, the entries
                        sorted by json.dumps(key, separators=(",", ":"), ensure_ascii=False)

Anything else (a datetime from YAML, a set, an object from pickle) has no canonical form:
consume reports it as an error. `from_canonical` is the reverse, used to publish; an array
that is a dict key becomes a tuple there (a list cannot be a key).

The URL is carrot's (amqp://guest:guest@127.0.0.1:5672/%2F); kombu reads it as it is.
"""

import argparse
import json
import struct
import sys
import time

from kombu import Connection, Exchange, Producer, Queue
from kombu.serialization import prepare_accept_content

# Every content type the matrix uses; the serializers beyond json are disabled in kombu by
# default, and message.decode() checks the message's content type against this list.
ACCEPT = [
    "application/json",
    "application/x-msgpack",
    "application/x-yaml",
    "application/x-python-serialize",
    "text/plain",
    "application/data",
]

SERIALIZERS = ("json", "msgpack", "yaml", "pickle")

# The properties a cell may set, as kombu's Producer.publish takes them (`type` included).
STRING_PROPERTIES = ("correlation_id", "reply_to", "message_id", "type", "user_id", "app_id")
PROPERTIES = STRING_PROPERTIES + ("expiration", "timestamp", "priority", "delivery_mode")


def canonical_key(key):
    return json.dumps(key, separators=(",", ":"), ensure_ascii=False)


def to_canonical(value):
    """The canonical JSON value of a Python value (see the module docstring)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return {"$int": str(value)}
    if isinstance(value, float):
        return {"$float": struct.pack(">d", value).hex()}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": bytes(value).hex()}
    if isinstance(value, (list, tuple)):
        return [to_canonical(item) for item in value]
    if isinstance(value, dict):
        entries = [[to_canonical(k), to_canonical(v)] for k, v in value.items()]
        entries.sort(key=lambda entry: canonical_key(entry[0]))
        return {"$map": entries}
    raise TypeError(f"no canonical form for {type(value).__name__}: {value!r}")


def from_canonical(value):
    """The Python value of a canonical JSON value (see the module docstring)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, list):
        return [from_canonical(item) for item in value]
    if isinstance(value, dict) and len(value) == 1:
        (tag, inner), = value.items()
        if tag == "$int":
            return int(inner)
        if tag == "$float":
            return struct.unpack(">d", bytes.fromhex(inner))[0]
        if tag == "$bytes":
            return bytes.fromhex(inner)
        if tag == "$map":
            return {hashable(from_canonical(k)): from_canonical(v) for k, v in inner}
    raise ValueError(f"not a canonical value: {value!r}")


def hashable(key):
    """A dict key: a list (a tuple in the source, as Python keys are) becomes a tuple."""
    return tuple(hashable(item) for item in key) if isinstance(key, list) else key


def queue_for(args):
    return Queue(args.queue, exchange=Exchange(""), routing_key=args.queue, durable=True)


def plain(value):
    """Header values as JSON: bytes as {"$bytes": hex}, anything else JSON lacks as its str."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": bytes(value).hex()}
    return str(value)


def describe(message):
    headers = dict(message.headers or {})
    properties = message.properties or {}
    line = {
        "cell": headers.get("cell"),
        "content_type": message.content_type,
        "content_encoding": message.content_encoding,
        "compression": headers.get("compression"),
        "properties": {name: properties.get(name) for name in PROPERTIES},
        "headers": headers,
    }
    try:
        if message.errors:  # kombu keeps a failed decompression here; decode() would not raise
            exc_type, exc, _ = message.errors[0]
            raise exc
        line["body"] = to_canonical(message.decode())
    except Exception as exc:  # the caller reports the cell, not this process
        line["error"] = f"{type(exc).__name__}: {exc}"
    return line


def get(queue):
    """Queue.get(accept=ACCEPT), except that a message kombu cannot decompress is returned
    with its error (Queue.get raises it, and the cell would be lost)."""
    raw = queue.channel.basic_get(queue=queue.name, no_ack=False)
    if raw is None:
        return None
    message = queue.channel.message_to_python(raw)
    message.accept = prepare_accept_content(ACCEPT)
    return message


def consume(args):
    with Connection(args.url, connect_timeout=args.timeout) as conn:
        queue = queue_for(args)(conn.default_channel)
        queue.declare()
        deadline = time.monotonic() + args.timeout
        taken = 0
        while taken < args.count:
            message = get(queue)
            if message is None:
                if time.monotonic() > deadline:
                    sys.exit(f"kombu_matrix: {taken} of {args.count} messages within {args.timeout} s")
                time.sleep(0.05)
                continue
            print(json.dumps(describe(message), default=plain), flush=True)
            message.ack()
            taken += 1


def publish_options(cell):
    """Producer.publish keyword arguments for a cell's body, serializer, compression and
    properties."""
    serializer = cell["serializer"]
    properties = dict(cell.get("properties") or {})
    headers = dict(properties.pop("headers", None) or {})
    headers["cell"] = cell["cell"]
    options = {"headers": headers}
    if cell.get("compression"):
        options["compression"] = cell["compression"]
    if serializer in SERIALIZERS:
        options["serializer"] = serializer
    elif serializer == "text":
        options.update(content_type="text/plain", content_encoding="utf-8")
    elif serializer == "bytes":
        options.update(content_type="application/data", content_encoding="binary")
    else:
        sys.exit(f"kombu_matrix: unknown serializer {serializer!r}: use json, msgpack, yaml, "
                 "pickle, text or bytes")
    expiration = properties.pop("expiration", None)
    if expiration is not None:
        # kombu takes the TTL in seconds and writes str(int(seconds * 1000)): check that the
        # milliseconds asked for are the ones it writes.
        seconds = int(expiration) / 1000
        if str(int(seconds * 1000)) != expiration:
            sys.exit(f"kombu_matrix: kombu cannot write expiration {expiration!r} exactly")
        options["expiration"] = seconds
    for name, value in properties.items():
        if name not in PROPERTIES:
            sys.exit(f"kombu_matrix: unknown property {name!r}")
        if value is not None:
            options[name] = value
    return options


def publish(args):
    cells = [json.loads(line) for line in sys.stdin if line.strip()]
    with Connection(
        args.url, connect_timeout=args.timeout, transport_options={"confirm_publish": True}
    ) as conn:
        channel = conn.default_channel
        queue_for(args)(channel).declare()
        producer = Producer(channel, exchange=Exchange(""), routing_key=args.queue)
        for cell in cells:
            body = from_canonical(cell["body"])
            if cell["serializer"] == "text" and not isinstance(body, str):
                sys.exit(f"kombu_matrix: cell {cell['cell']}: a text body is a string")
            if cell["serializer"] == "bytes" and not isinstance(body, bytes):
                sys.exit(f"kombu_matrix: cell {cell['cell']}: a bytes body is {{\"$bytes\": hex}}")
            producer.publish(body, **publish_options(cell))
    print(len(cells))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("consume", "publish"):
        command = commands.add_parser(name)
        command.add_argument("--url", required=True, help="amqp://user:password@host:port/vhost")
        command.add_argument("--queue", required=True)
        command.add_argument("--timeout", type=float, default=20.0, help="seconds")
        if name == "consume":
            command.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    consume(args) if args.command == "consume" else publish(args)


if __name__ == "__main__":
    main()

"""kombu's consumer on its Redis transport, for tests/redis_kill.rs: consumes QUEUE at URL
(the visibility timeout is the URL's `visibility_timeout` option, given to kombu as the
transport option of that name), writes each message's body on a line of RECORD, then
acknowledges it; runs until killed.

    python3 kombu_kill.py redis://127.0.0.1:6379/0?visibility_timeout=2 QUEUE RECORD
"""

import json
import socket
import sys
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from kombu import Connection, Queue


def main():
    url, queue, record = sys.argv[1:4]
    parts = urlsplit(url)
    # kombu refuses transport options in the URL: pass them as transport options.
    options = {k: float(v) for k, v in parse_qsl(parts.query)}
    url = urlunsplit(parts._replace(query=""))
    with open(record, "a", buffering=1) as out, Connection(url, transport_options=options) as conn:

        def handle(body, message):
            out.write(json.dumps(body) + "\n")
            out.flush()
            message.ack()

        with conn.Consumer(Queue(queue), callbacks=[handle], prefetch_count=8):
            while True:
                try:
                    conn.drain_events(timeout=1)
                except socket.timeout:
                    pass


if __name__ == "__main__":
    main()

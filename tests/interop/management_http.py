"""One suite of HTTP checks run against RabbitMQ's management plugin and carrot serve's
management API: the same requests, the same status codes, the same fields.

Usage: management_http.py TARGETS_JSON, a list of {"name", "http", "amqp", "kind"} where
kind is "rabbitmq" or "carrot". Prints one line per check; exits non-zero on the first
failure, naming the target and the request.

RabbitMQ refreshes its statistics every 5 seconds, so counts are polled (bounded).
Prometheus output (carrot serve only) is parsed by the official Python client's parser.
"""

import base64
import json
import sys
import time
import uuid

import pika
import requests

GUEST = ("guest", "guest")
WAIT = 15.0


class Failure(Exception):
    pass


class Target:
    def __init__(self, spec):
        self.name = spec["name"]
        self.http = spec["http"].rstrip("/")
        self.amqp = spec["amqp"]
        self.kind = spec["kind"]
        self.run = uuid.uuid4().hex[:8]

    def call(self, method, path, auth=GUEST, body=None, raw=None, headers=None):
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        h = {"content-type": "application/json"}
        h.update(headers or {})
        return requests.request(method, self.http + path, auth=auth, data=data, headers=h, timeout=30)

    def expect(self, method, path, status, auth=GUEST, body=None, raw=None, headers=None):
        r = self.call(method, path, auth=auth, body=body, raw=raw, headers=headers)
        wanted = status if isinstance(status, (list, tuple)) else [status]
        if r.status_code not in wanted:
            raise Failure(f"{self.name}: {method} {path} gave {r.status_code} (wanted {status}): {r.text[:300]}")
        print(f"ok {self.name}: {method} {path} -> {r.status_code}", flush=True)
        return r

    def name_of(self, local):
        return f"carrot-http.{self.run}.{local}"


def has(target, what, value, fields):
    missing = [f for f in fields if f not in value]
    if missing:
        raise Failure(f"{target.name}: {what} lacks {missing}: {json.dumps(value)[:400]}")


def error_body(target, r, error, reason=None):
    body = r.json()
    if body.get("error") != error or (reason is not None and body.get("reason") != reason):
        raise Failure(f"{target.name}: wanted error {error!r} reason {reason!r}, got {body}")


def poll(target, what, check):
    deadline = time.time() + WAIT
    last = None
    while time.time() < deadline:
        last = check()
        if last is True:
            return
        time.sleep(0.25)
    raise Failure(f"{target.name}: {what} not within {WAIT}s (last: {last})")


def enc(text):
    return requests.utils.quote(text, safe="")


def auth_and_tags(t):
    t.expect("GET", "/api/overview", 401, auth=None)
    r = t.expect("GET", "/api/overview", 401, auth=("guest", "wrong"))
    error_body(t, r, "not_authorized", "Login failed")
    r = t.expect("GET", "/api/overview", 200)
    has(t, "overview", r.json(), ["management_version", "rabbitmq_version", "product_name",
                                  "message_stats", "object_totals", "listeners", "exchange_types", "node"])
    has(t, "object_totals", r.json()["object_totals"], ["connections", "channels", "exchanges", "queues", "consumers"])
    r = t.expect("GET", "/api/whoami", 200)
    if r.json().get("name") != "guest" or "administrator" not in r.json().get("tags", []):
        raise Failure(f"{t.name}: whoami {r.json()}")
    # Users of this run: one without tags, one monitoring user, both with a password.
    plain, monitor = t.name_of("plain"), t.name_of("monitor")
    t.expect("PUT", f"/api/users/{enc(plain)}", 201, body={"password": "pw1", "tags": ""})
    t.expect("PUT", f"/api/users/{enc(plain)}", 204, body={"password": "pw1", "tags": ""})
    t.expect("PUT", f"/api/users/{enc(monitor)}", 201, body={"password": "pw2", "tags": "monitoring"})
    r = t.expect("PUT", f"/api/users/{enc(t.name_of('notags'))}", 400, body={"password": "x"})
    error_body(t, r, "bad_request", "tags_not_present")
    r = t.expect("GET", f"/api/users/{enc(monitor)}", 200)
    has(t, "user", r.json(), ["name", "password_hash", "hashing_algorithm", "tags"])
    if r.json()["hashing_algorithm"] != "rabbit_password_hashing_sha256" or "pw2" in r.text:
        raise Failure(f"{t.name}: the password must be stored hashed: {r.text}")
    r = t.expect("GET", "/api/overview", 401, auth=(plain, "pw1"))
    error_body(t, r, "not_authorised", "Not management user")
    r = t.expect("GET", "/api/users", 401, auth=(monitor, "pw2"))
    error_body(t, r, "not_authorised", "Not administrator user")
    t.expect("GET", "/api/overview", 200, auth=(monitor, "pw2"))
    t.expect("GET", "/api/users", 200)
    return plain, monitor


def vhosts_and_permissions(t, plain, monitor):
    vhost = t.name_of("vhost")
    t.expect("PUT", f"/api/vhosts/{enc(vhost)}", 201, body={"description": "a test vhost"})
    t.expect("PUT", f"/api/vhosts/{enc(vhost)}", 204)
    r = t.expect("GET", f"/api/vhosts/{enc(vhost)}", 200)
    # A second PUT without a body resets the description, as RabbitMQ does.
    has(t, "vhost", r.json(), ["name", "description", "tags", "metadata"])
    if r.json()["description"] != "":
        raise Failure(f"{t.name}: vhost {r.json()}")
    names = [v["name"] for v in t.expect("GET", "/api/vhosts", 200).json()]
    if vhost not in names or "/" not in names:
        raise Failure(f"{t.name}: vhosts {names}")
    t.expect("PUT", f"/api/permissions/{enc(vhost)}/{enc(plain)}", 201,
             body={"configure": "^x$", "write": ".*", "read": ".*"})
    t.expect("PUT", f"/api/permissions/{enc(vhost)}/{enc(plain)}", 204,
             body={"configure": ".*", "write": ".*", "read": ".*"})
    t.expect("PUT", f"/api/permissions/{enc(vhost)}/{enc(plain)}", 400,
             body={"configure": "(", "write": ".*", "read": ".*"})
    r = t.expect("GET", f"/api/permissions/{enc(vhost)}/{enc(plain)}", 200)
    has(t, "permission", r.json(), ["user", "vhost", "configure", "write", "read"])
    listed = t.expect("GET", f"/api/vhosts/{enc(vhost)}/permissions", 200).json()
    if not any(p["user"] == plain for p in listed):
        raise Failure(f"{t.name}: vhost permissions {listed}")
    # The user of the permission opens the vhost over AMQP; without one it is refused.
    connection = pika.BlockingConnection(parameters(t, plain, "pw1", vhost))
    connection.close()
    try:
        pika.BlockingConnection(parameters(t, monitor, "pw2", vhost))
        raise Failure(f"{t.name}: a user without permissions opened {vhost}")
    except pika.exceptions.ProbableAccessDeniedError as e:
        if "530" not in str(e) or "refused for user" not in str(e):
            raise Failure(f"{t.name}: refusal {e}")
    print(f"ok {t.name}: vhost access over AMQP follows the permissions", flush=True)
    # A queue with a message in the vhost, and a connection to it: deleting the vhost takes
    # the queue along and closes the connection with 320.
    connection = pika.BlockingConnection(parameters(t, plain, "pw1", vhost))
    channel = connection.channel()
    channel.queue_declare("doomed", durable=True)
    channel.basic_publish("", "doomed", b"x")
    t.expect("DELETE", f"/api/permissions/{enc(vhost)}/{enc(plain)}", 204)
    t.expect("DELETE", f"/api/permissions/{enc(vhost)}/{enc(plain)}", 404)
    t.expect("DELETE", f"/api/vhosts/{enc(vhost)}", 204)
    closed = None
    deadline = time.time() + WAIT
    while time.time() < deadline and closed is None:
        try:
            connection.process_data_events(time_limit=0.2)
        except pika.exceptions.AMQPConnectionError as e:
            closed = e
    if closed is None or "320" not in str(closed):
        raise Failure(f"{t.name}: deleting the vhost did not close its connection with 320: {closed!r}")
    print(f"ok {t.name}: deleting a vhost closes its connections ({closed})", flush=True)
    t.expect("PUT", f"/api/vhosts/{enc(vhost)}", 201)
    t.expect("GET", f"/api/queues/{enc(vhost)}/doomed", 404)
    t.expect("DELETE", f"/api/vhosts/{enc(vhost)}", 204)
    t.expect("DELETE", f"/api/vhosts/{enc(vhost)}", 404)
    t.expect("GET", f"/api/queues/{enc(vhost)}", 404)


def parameters(t, user, password, vhost="/"):
    params = pika.URLParameters(t.amqp)
    params.credentials = pika.PlainCredentials(user, password)
    params.virtual_host = vhost
    return params


def queues_and_messages(t, monitor):
    q = t.name_of("q")
    path = f"/api/queues/%2F/{enc(q)}"
    t.expect("PUT", path, 201, body={"durable": True, "auto_delete": False, "arguments": {}})
    t.expect("PUT", path, 204, body={"durable": True})
    r = t.expect("PUT", path, 400, body={"durable": False})
    error_body(t, r, "bad_request")
    r = t.expect("GET", path, 200)
    has(t, "queue", r.json(), ["name", "vhost", "durable", "auto_delete", "exclusive", "arguments", "node"])
    publish = f"/api/exchanges/%2F/amq.default/publish"
    for n in range(3):
        r = t.expect("POST", publish, 200, body={"properties": {"delivery_mode": 2, "headers": {"n": n}},
                                                  "routing_key": q, "payload": f"m{n}", "payload_encoding": "string"})
        if r.json() != {"routed": True}:
            raise Failure(f"{t.name}: publish {r.json()}")
    r = t.expect("POST", publish, 200, body={"properties": {}, "routing_key": t.name_of("nowhere"),
                                              "payload": "x", "payload_encoding": "string"})
    if r.json() != {"routed": False}:
        raise Failure(f"{t.name}: unroutable publish {r.json()}")
    r = t.expect("POST", publish, 200, body={"properties": {}, "routing_key": q,
                                              "payload": base64.b64encode(b"\x00\xff").decode(),
                                              "payload_encoding": "base64"})

    def ready(n):
        def check():
            body = t.call("GET", path).json()
            return True if body.get("messages_ready") == n else body.get("messages_ready")
        return check

    poll(t, "4 messages ready", ready(4))
    r = t.expect("POST", path + "/get", 200, body={"count": 2, "ackmode": "ack_requeue_true", "encoding": "auto"})
    got = r.json()
    if [m["payload"] for m in got] != ["m0", "m1"]:
        raise Failure(f"{t.name}: get {got}")
    for m in got:
        has(t, "message", m, ["payload_bytes", "redelivered", "exchange", "routing_key", "message_count",
                              "properties", "payload", "payload_encoding"])
    if got[0]["properties"].get("headers") != {"n": 0} or got[0]["properties"].get("delivery_mode") != 2:
        raise Failure(f"{t.name}: properties {got[0]['properties']}")
    r = t.expect("POST", path + "/get", 200, body={"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"})
    if r.json()[0]["payload"] != "m0" or not r.json()[0]["redelivered"]:
        raise Failure(f"{t.name}: the requeued message comes first, redelivered: {r.json()}")
    # An unknown ackmode crashes RabbitMQ 3.10's handler (500); carrot serve says 400.
    t.expect("POST", path + "/get", 500 if t.kind == "rabbitmq" else 400,
             body={"count": 1, "ackmode": "nonsense", "encoding": "auto"})
    poll(t, "3 messages ready", ready(3))
    t.expect("DELETE", path, 401, auth=(monitor, "pw2"))
    t.expect("DELETE", path + "/contents", 401, auth=(monitor, "pw2"))
    t.expect("DELETE", path + "/contents", 204)
    poll(t, "the queue purged", ready(0))
    names = [x["name"] for x in t.expect("GET", "/api/queues/%2F", 200).json()]
    if q not in names:
        raise Failure(f"{t.name}: {q} not in {names[:20]}")
    return q


def exchanges_and_bindings(t, q):
    x = t.name_of("x")
    xpath = f"/api/exchanges/%2F/{enc(x)}"
    t.expect("PUT", xpath, 201, body={"type": "topic", "durable": True})
    t.expect("PUT", xpath, 204, body={"type": "topic", "durable": True})
    r = t.expect("PUT", f"/api/exchanges/%2F/{enc(t.name_of('bad'))}", 400, body={"type": "nope"})
    error_body(t, r, "bad_request")
    r = t.expect("GET", xpath, 200)
    has(t, "exchange", r.json(), ["name", "vhost", "type", "durable", "auto_delete", "internal", "arguments"])
    if r.json()["type"] != "topic":
        raise Failure(f"{t.name}: exchange {r.json()}")
    bpath = f"/api/bindings/%2F/e/{enc(x)}/q/{enc(q)}"
    r = t.expect("POST", bpath, 201, body={"routing_key": "a.#", "arguments": {}})
    location = r.headers.get("location")
    if not location:
        raise Failure(f"{t.name}: no Location header after a binding")
    listed = t.expect("GET", bpath, 200).json()
    if len(listed) != 1 or listed[0]["routing_key"] != "a.#":
        raise Failure(f"{t.name}: bindings {listed}")
    has(t, "binding", listed[0], ["source", "vhost", "destination", "destination_type", "routing_key",
                                  "arguments", "properties_key"])
    r = t.expect("POST", f"{xpath}/publish", 200, body={"properties": {}, "routing_key": "a.b",
                                                          "payload": "via x", "payload_encoding": "string"})
    if r.json() != {"routed": True}:
        raise Failure(f"{t.name}: publish through the binding {r.json()}")
    all_bindings = t.expect("GET", "/api/bindings/%2F", 200).json()
    if not any(b["source"] == "" and b["destination"] == q for b in all_bindings):
        raise Failure(f"{t.name}: the default exchange's binding of {q} is not listed")
    t.expect("DELETE", f"{bpath}/{enc(listed[0]['properties_key'])}", 204)
    t.expect("DELETE", f"{bpath}/{enc(listed[0]['properties_key'])}", 404)
    t.expect("DELETE", xpath, 204)
    t.expect("DELETE", xpath, 404)


def connections(t):
    name = t.name_of("conn")
    params = parameters(t, "guest", "guest")
    params.client_properties = {"connection_name": name}
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    found = {}

    def listed():
        for c in t.call("GET", "/api/connections").json():
            if c.get("user_provided_name") == name or c.get("client_properties", {}).get("connection_name") == name:
                found.update(c)
                return True
        return "not yet"

    poll(t, "the connection listed", listed)
    has(t, "connection", found, ["name", "vhost", "user", "channels", "peer_host", "peer_port", "protocol"])
    t.expect("GET", "/api/channels", 200)
    t.expect("GET", "/api/consumers", 200)
    t.expect("DELETE", f"/api/connections/{enc(found['name'])}", 204, headers={"X-Reason": "closed by the test"})
    deadline = time.time() + WAIT
    closed = None
    while time.time() < deadline and closed is None:
        try:
            connection.process_data_events(time_limit=0.2)
            channel.basic_publish("", "nowhere", b"x")
        except pika.exceptions.ConnectionClosedByBroker as e:
            closed = e
        except pika.exceptions.AMQPConnectionError as e:
            closed = e
    if closed is None or "320" not in str(closed) or "closed by the test" not in str(closed):
        raise Failure(f"{t.name}: the connection was not closed with 320 and the reason: {closed!r}")
    print(f"ok {t.name}: DELETE of a connection closes it with 320 ({closed})", flush=True)


def definitions_and_health(t, q):
    r = t.expect("GET", "/api/definitions", 200)
    has(t, "definitions", r.json(), ["users", "vhosts", "permissions", "queues", "exchanges", "bindings"])
    if not any(x["name"] == q for x in r.json()["queues"]):
        raise Failure(f"{t.name}: {q} not in the exported definitions")
    x = t.name_of("defs-x")
    t.expect("POST", "/api/definitions", [201, 204], body={
        "exchanges": [{"name": x, "vhost": "/", "type": "fanout", "durable": True, "auto_delete": False,
                       "internal": False, "arguments": {}}],
        "queues": [], "bindings": [], "users": [], "vhosts": [], "permissions": []})
    t.expect("GET", f"/api/exchanges/%2F/{enc(x)}", 200)
    t.expect("DELETE", f"/api/exchanges/%2F/{enc(x)}", 204)
    t.expect("POST", "/api/definitions", 400, raw="{not json")
    r = t.expect("GET", "/api/health/checks/alarms", 200)
    if r.json().get("status") != "ok":
        raise Failure(f"{t.name}: alarms {r.json()}")
    r = t.expect("GET", "/api/aliveness-test/%2F", 200)
    if r.json().get("status") != "ok":
        raise Failure(f"{t.name}: aliveness {r.json()}")


def bad_input(t, q):
    r = t.expect("PUT", f"/api/queues/%2F/{enc(t.name_of('j'))}", 400, raw="{\"durable\": tru")
    error_body(t, r, "bad_request", "not_json")
    # Fields RabbitMQ does not know are ignored, not refused (the queue exists: 204).
    t.expect("PUT", f"/api/queues/%2F/{enc(q)}", 204, body={"durable": True, "bogus": 1})
    t.expect("GET", "/api/nothing/here", 404)
    t.expect("GET", "/api/queues/%2F/..%2F..%2Fetc%2Fpasswd", 404)
    t.expect("GET", "/api/queues/no-such-vhost", 404)
    t.expect("PATCH", "/api/overview", 405)
    t.expect("DELETE", "/api/overview", 405)
    # A body far bigger than any request: refused, and the server stays up.
    # (RabbitMQ 3.10 answers 500; carrot serve refuses it before reading it all: 413.)
    t.expect("PUT", f"/api/queues/%2F/{enc(t.name_of('big'))}", 500 if t.kind == "rabbitmq" else 413, raw="{\"arguments\": \"" + "x" * (40 << 20) + "\"}")
    t.expect("GET", "/api/overview", 200)
    t.expect("DELETE", f"/api/queues/%2F/{enc(q)}", 204)
    t.expect("DELETE", f"/api/queues/%2F/{enc(q)}", 404)


def prometheus(t):
    from prometheus_client.parser import text_string_to_metric_families

    def scrape():
        r = requests.get(t.http + "/metrics", timeout=30)
        if r.status_code != 200:
            raise Failure(f"{t.name}: /metrics {r.status_code}")
        samples = {}
        for family in text_string_to_metric_families(r.text):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return samples

    q = t.name_of("prom")
    before = scrape()
    received = before.get(("rabbitmq_global_messages_received_total", (("protocol", "amqp091"),)), 0)
    connection = pika.BlockingConnection(parameters(t, "guest", "guest"))
    channel = connection.channel()
    channel.queue_declare(q, durable=True)
    for n in range(5):
        channel.basic_publish("", q, f"p{n}".encode())
    channel.basic_get(q, auto_ack=False)
    connection.process_data_events(time_limit=0.2)
    after = scrape()
    key = (("queue", q), ("vhost", "/"))
    checks = {
        "rabbitmq_queue_messages_ready": 4,
        "rabbitmq_queue_messages_unacked": 1,
        "rabbitmq_queue_messages": 5,
        "rabbitmq_queue_consumers": 0,
    }
    for name, wanted in checks.items():
        if after.get((name, key)) != wanted:
            raise Failure(f"{t.name}: {name}{dict(key)} = {after.get((name, key))}, wanted {wanted}")
    got = after.get(("rabbitmq_global_messages_received_total", (("protocol", "amqp091"),)), 0)
    if got - received != 5:
        raise Failure(f"{t.name}: received_total rose by {got - received}, wanted 5")
    if after.get(("rabbitmq_connections", ())) < 1 or after.get(("rabbitmq_channels", ())) < 1:
        raise Failure(f"{t.name}: connections/channels gauges {after.get(('rabbitmq_connections', ()))}")
    # The queue's own counts: one delivery (the get), then its ack.
    stats = t.call("GET", f"/api/queues/%2F/{enc(q)}").json().get("message_stats", {})
    if stats.get("deliver_get") != 1 or stats.get("ack") != 0:
        raise Failure(f"{t.name}: queue message_stats {stats}")
    method, _, _ = channel.basic_get(q, auto_ack=False)
    channel.basic_ack(method.delivery_tag)
    connection.process_data_events(time_limit=0.2)
    stats = t.call("GET", f"/api/queues/%2F/{enc(q)}").json().get("message_stats", {})
    if stats.get("deliver_get") != 2 or stats.get("ack") != 1 or "rate" not in stats.get("ack_details", {}):
        raise Failure(f"{t.name}: queue message_stats after an ack {stats}")
    per_object = requests.get(t.http + "/metrics/per-object", timeout=30)
    if per_object.status_code != 200 or q not in per_object.text:
        raise Failure(f"{t.name}: /metrics/per-object")
    channel.queue_delete(q)
    connection.close()
    print(f"ok {t.name}: Prometheus output parsed, values match the traffic", flush=True)


def main():
    targets = [Target(spec) for spec in json.loads(sys.argv[1])]
    for t in targets:
        plain, monitor = auth_and_tags(t)
        vhosts_and_permissions(t, plain, monitor)
        q = queues_and_messages(t, monitor)
        exchanges_and_bindings(t, q)
        connections(t)
        definitions_and_health(t, q)
        bad_input(t, q)
        if t.kind == "carrot":
            prometheus(t)
        for user in (plain, monitor):
            t.expect("DELETE", f"/api/users/{enc(user)}", 204)
        print(f"PASS {t.name}", flush=True)


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        print(f"FAIL {e}", flush=True)
        sys.exit(1)

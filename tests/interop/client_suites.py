#!/usr/bin/env python3
"""Real clients' own integration tests against RabbitMQ and `carrot serve` (tests/client_suites.rs).

    client_suites.py --work DIR --tls-ca CA.pem \
        --broker rabbitmq=PLAIN_PORT,TLS_PORT --broker serve-memory=P,T --broker serve-sqlite=P,T

Fetches the source distributions of the installed py-amqp and kombu from PyPI (pip download,
into DIR; nothing of theirs is kept in carrot's repository), and runs, once per broker, the
integration tests they ship: py-amqp's `t/integration/test_rmq.py` (plain and TLS) and kombu's
`t/integration/test_py_amqp.py`. The first broker is the reference: every test that passes
on it must pass on the others, except those in KNOWN (each with its reason). Prints each
test's outcome on each broker; exits 1 when a serve fails where RabbitMQ passes, or when
nothing passed on the reference.

Left out everywhere: py-amqp's two `default_certs` tests, which connect to
tls-v1-2.badssl.com (the tests reach nothing but 127.0.0.1). py-amqp's TLS tests read
`t/certs/`, which its source distribution does not ship: they are made here, the CA being the
one whose certificate the brokers' TLS listeners present (for `localhost`), the client's a
self-signed one (no broker asks for it), the "broken" ones not PEM at all.
"""

import argparse
import importlib.metadata
import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET

# Tests that cannot pass on carrot serve for a reason that is not a bug: none.
KNOWN = {}

SUITES = [
    # (distribution, module, test file, pytest -k expression)
    ("amqp", "amqp", "t/integration/test_rmq.py", "not default_certs"),
    ("kombu", "kombu", "t/integration/test_py_amqp.py", None),
]


def source(work, distribution):
    """The extracted source distribution of the installed version of `distribution`."""
    version = importlib.metadata.version(distribution)
    folder = os.path.join(work, f"{distribution}-{version}")
    if os.path.isdir(os.path.join(folder, "t", "integration")):
        return folder
    archive = os.path.join(work, f"{distribution}-{version}.tar.gz")
    if not os.path.exists(archive):
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
             "-q", "-d", work, f"{distribution}=={version}"],
            check=True,
        )
    with tarfile.open(archive) as tar:
        try:
            tar.extractall(work, filter="data")
        except TypeError:  # a Python without extraction filters (before 3.11.4)
            tar.extractall(work)
    return folder


def make_certs(folder, ca):
    certs = os.path.join(folder, "t", "certs")
    os.makedirs(certs, exist_ok=True)
    with open(ca, "rb") as src, open(os.path.join(certs, "ca_certificate.pem"), "wb") as dst:
        dst.write(src.read())
    key, cert = os.path.join(certs, "client_key.pem"), os.path.join(certs, "client_certificate.pem")
    if not os.path.exists(cert):
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=carrot-test-client", "-keyout", key, "-out", cert],
            check=True, capture_output=True,
        )
    for broken in ("client_key_broken.pem", "client_certificate_broken.pem"):
        with open(os.path.join(certs, broken), "w") as f:
            f.write("not a PEM file\n")


def run(folder, test_file, keyword, broker, plain, tls, report):
    """One suite on one broker: {test id: outcome}."""
    env = dict(os.environ)
    # TLS certificates are for localhost; it resolves to the loopback interface.
    env.update(RABBITMQ_HOST="localhost", RABBITMQ_5672_TCP=str(plain), RABBITMQ_5671_TCP=str(tls))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore",
               "--junit-xml", report, test_file]
    if keyword:
        command += ["-k", keyword]
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    if not os.path.exists(report):
        sys.exit(f"client_suites.py: pytest wrote no report on {broker}:\n{done.stdout}\n{done.stderr}")
    outcomes = {}
    for case in ET.parse(report).iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            outcomes[name] = "failed"
        elif case.find("skipped") is not None:
            outcomes[name] = "skipped"
        else:
            outcomes[name] = "passed"
    return outcomes


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True)
    parser.add_argument("--tls-ca", required=True)
    parser.add_argument("--broker", action="append", required=True, help="NAME=PLAIN_PORT,TLS_PORT")
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    brokers = []
    for spec in args.broker:
        name, ports = spec.split("=")
        plain, tls = ports.split(",")
        brokers.append((name, plain, tls))
    results = {}  # test id -> {broker: outcome}
    for distribution, module, test_file, keyword in SUITES:
        folder = source(args.work, distribution)
        if module == "amqp":
            make_certs(folder, args.tls_ca)
        for name, plain, tls in brokers:
            report = os.path.join(args.work, f"{distribution}-{name}.xml")
            if os.path.exists(report):
                os.remove(report)
            for test, outcome in run(folder, test_file, keyword, name, plain, tls, report).items():
                results.setdefault(f"{distribution}: {test}", {})[name] = outcome
    reference = brokers[0][0]
    names = [b[0] for b in brokers]
    width = max(len(t) for t in results)
    print(f"{'test':<{width}}  " + "  ".join(f"{n:<12}" for n in names))
    regressions = []
    for test in sorted(results):
        row = results[test]
        print(f"{test:<{width}}  " + "  ".join(f"{row.get(n, '-'):<12}" for n in names))
        if row.get(reference) == "passed":
            for name in names[1:]:
                if row.get(name) != "passed" and test not in KNOWN:
                    regressions.append(f"{test} on {name}: {row.get(name, 'not run')}")
    for name in names:
        passed = sum(1 for row in results.values() if row.get(name) == "passed")
        print(f"{name}: {passed} of {len(results)} passed")
    if not any(row.get(reference) == "passed" for row in results.values()):
        sys.exit(f"client_suites.py: nothing passed on {reference}, the reference")
    if regressions:
        sys.exit("client_suites.py: passes on the reference but not on carrot serve:\n  " + "\n  ".join(regressions))
    print("ok")


if __name__ == "__main__":
    main()

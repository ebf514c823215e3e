#!/usr/bin/env python3
"""The dashboard of `carrot serve --management` in a real browser (tests/dashboard.rs).

    dashboard.py --http http://127.0.0.1:PORT --amqp amqp://guest:guest@127.0.0.1:PORT/%2F
                 --queue NAME --chromium /usr/bin/chromium --chromedriver /usr/bin/chromedriver

Headless Chromium driven by Selenium:

1. the page shows its login form (and not the app);
2. guest with a wrong password: "Login failed", still the form;
3. guest/guest: the app, "guest" in the header, the queue NAME (declared by the caller,
   empty) with ready 0;
4. pika (left connected, with a connection name of its own) publishes 3 messages to NAME:
   the row shows ready 3;
5. the row's Purge button (accepting its confirm()): ready 0, and the API says 0 too;
6. pika's connection has a row in the connections table; its Close button (confirm()
   accepted): the row goes, and pika sees the server close the connection (320
   CONNECTION_FORCED).

Each step waits at most WAIT seconds (the page refreshes every 2 s). Prints `ok: STEP` per
step and `PASS` at the end; on a failure, what went wrong with the page's state (the error
lines, the tables, an excerpt of the source) and the browser's console log, exit status 1.
"""

import argparse
import base64
import json
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pika
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

WAIT = 10
# The page rebuilds its tables every 2 s: an element found may be gone a moment later.
TRANSIENT = (NoSuchElementException, StaleElementReferenceException)


class Failure(Exception):
    pass


def api(http, method, path, user="guest", password="guest"):
    """One request to the management API; (status, parsed JSON body or None)."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(
        http + "/api/" + path, method=method, headers={"Authorization": "Basic " + token}
    )
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            body = response.read()
            return response.status, (json.loads(body) if body else None)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def wait_for(driver, what, condition, timeout=WAIT):
    """Waits until condition(driver) is truthy (elements vanishing meanwhile are retried)."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2, ignored_exceptions=TRANSIENT).until(
            condition
        )
    except TimeoutException:
        raise Failure(f"not within {timeout} s: {what}") from None


def text_of(driver, css):
    return driver.find_element(By.CSS_SELECTOR, css).text.strip()


def queue_row(queue):
    return f'tr[data-queue="{queue}"][data-vhost="/"]'


def ready_is(queue, expected):
    def check(driver):
        return text_of(driver, queue_row(queue) + " td[data-test=ready]") == str(expected)

    return check


def click_and_confirm(driver, what, css):
    """Clicks the button at css (found again if the table was rebuilt under it) and accepts
    the confirm() it opens; returns the dialog's text."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            driver.find_element(By.CSS_SELECTOR, css).click()
            break
        except TRANSIENT:
            if time.monotonic() > deadline:
                raise Failure(f"no button to click for {what}: {css}") from None
            time.sleep(0.1)
    try:
        alert = WebDriverWait(driver, WAIT).until(EC.alert_is_present())
    except TimeoutException:
        raise Failure(f"{what}: the button opened no confirm()") from None
    text = alert.text
    alert.accept()
    return text


def connection_row(driver, name):
    """The connections table's row of connection `name`, or None."""
    for row in driver.find_elements(By.CSS_SELECTOR, "#connections tbody tr"):
        if row.get_attribute("data-connection") == name:
            return row
    return None


def row_cells(driver, name):
    """The texts of the cells of connection `name`'s row, or None."""
    row = connection_row(driver, name)
    return None if row is None else [td.text.strip() for td in row.find_elements(By.TAG_NAME, "td")]


def run(driver, args, log):
    http = args.http.rstrip("/")
    queue = args.queue

    driver.get(http + "/")
    wait_for(driver, "the login form is shown", lambda d: d.find_element(By.ID, "login").is_displayed())
    if driver.find_element(By.ID, "app").is_displayed():
        raise Failure("the app is shown before logging in")
    log("the login form is shown, the app is not")

    driver.find_element(By.ID, "username").send_keys("guest")
    driver.find_element(By.ID, "password").send_keys("not-the-password")
    driver.find_element(By.ID, "login-button").click()
    wait_for(driver, 'a wrong password says "Login failed"', lambda d: text_of(d, "#login-error") == "Login failed")
    if driver.find_element(By.ID, "app").is_displayed() or not driver.find_element(By.ID, "login").is_displayed():
        raise Failure("a wrong password left the login form")
    log('a wrong password: "Login failed", still the login form')

    password = driver.find_element(By.ID, "password")
    password.clear()
    password.send_keys("guest")
    driver.find_element(By.ID, "login-button").click()
    wait_for(driver, "the app is shown after logging in", lambda d: d.find_element(By.ID, "app").is_displayed())
    wait_for(driver, 'the header names "guest"', lambda d: text_of(d, "#who") == "guest")
    if driver.find_element(By.ID, "login").is_displayed():
        raise Failure("the login form is still shown after logging in")
    log("guest/guest: the app, logged in as guest")

    wait_for(driver, f"queue {queue} shows ready 0", ready_is(queue, 0))
    log(f"queue {queue}: ready 0")

    name = f"carrot-dashboard-{uuid.uuid4()}"
    params = pika.URLParameters(args.amqp)
    params.client_properties = {"connection_name": name}
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    for n in range(3):
        channel.basic_publish(exchange="", routing_key=queue, body=f"message {n}".encode())
    # Round trip, so that the server has them all before the page is watched.
    channel.queue_declare(queue, passive=True)
    wait_for(driver, f"queue {queue} shows ready 3 after 3 publishes", ready_is(queue, 3))
    log("3 messages published with pika: ready 3")

    text = click_and_confirm(driver, "Purge", queue_row(queue) + " button[data-test=purge]")
    wait_for(driver, f"queue {queue} shows ready 0 after Purge", ready_is(queue, 0))
    status, body = api(http, "GET", "queues/%2F/" + urllib.parse.quote(queue, safe=""))
    if status != 200 or body.get("messages_ready") != 0 or body.get("messages") != 0:
        raise Failure(f"the page shows 0 after Purge but the API answers {status}: {body}")
    error = text_of(driver, "#error")
    if error:
        raise Failure(f"the page shows an error after Purge: {error}")
    log(f"Purge (confirm {text!r} accepted): ready 0, and 0 through the API")

    # pika's connection, by the name it gave: the API's name for it is the row's key.
    status, connections = api(http, "GET", "connections")
    if status != 200:
        raise Failure(f"GET /api/connections: {status} {connections}")
    ours = [c["name"] for c in connections if c.get("user_provided_name") == name]
    if len(ours) != 1:
        raise Failure(f"pika's connection {name!r} is not once in /api/connections: {connections}")
    server_name = ours[0]
    cells = wait_for(driver, f"a row for pika's connection {server_name!r}", lambda d: row_cells(d, server_name))
    if cells[:3] != [server_name, "guest", "/"]:
        raise Failure(f"pika's connection row reads {cells}")
    log(f"pika's connection has its row: {cells[:4]}")

    css = f'#connections tr[data-connection="{server_name}"] button[data-test=close]'
    click_and_confirm(driver, "Close", css)
    # pika reads what the server sends meanwhile (the server's Connection.Close, which it
    # answers), while the page refreshes.
    closed = None
    gone = False
    deadline = time.monotonic() + WAIT
    while (closed is None or not gone) and time.monotonic() < deadline:
        if closed is None:
            try:
                connection.process_data_events(time_limit=0.2)
            except pika.exceptions.ConnectionClosedByBroker as e:
                closed = (e.reply_code, e.reply_text)
            except pika.exceptions.AMQPError as e:
                raise Failure(f"pika's connection ended otherwise than closed by the server: {e!r}") from None
        else:
            time.sleep(0.2)
        try:
            gone = connection_row(driver, server_name) is None
        except TRANSIENT:
            pass
    if closed is None:
        raise Failure(f"pika's connection is still open {WAIT} s after Close")
    if not gone:
        raise Failure(f"pika's connection row is still shown {WAIT} s after Close")
    if closed[0] != 320:
        raise Failure(f"pika's connection was closed with {closed}, not 320 CONNECTION_FORCED")
    status, _ = api(http, "GET", "connections/" + urllib.parse.quote(server_name, safe=""))
    if status != 404:
        raise Failure(f"the closed connection is still in the API: GET answers {status}")
    log(f"Close: the row went, pika saw the server close it {closed}")


def diagnose(driver, http):
    """What the page looked like, and what the browser logged."""
    # A browser answers a 401 carrying WWW-Authenticate with its own login prompt, which a
    # headless one never shows: the page's request then never completes.
    try:
        token = base64.b64encode(b"guest:not-the-password").decode()
        request = urllib.request.Request(http + "/api/whoami", headers={"Authorization": "Basic " + token})
        urllib.request.urlopen(request, timeout=WAIT)
        print("---- a wrong password: GET /api/whoami succeeds", file=sys.stderr)
    except urllib.error.HTTPError as e:
        print(
            f"---- a wrong password: GET /api/whoami answers {e.code}, "
            f"WWW-Authenticate: {e.headers.get('WWW-Authenticate')}",
            file=sys.stderr,
        )
    except OSError as e:
        print(f"---- a wrong password: GET /api/whoami has no answer: {e}", file=sys.stderr)
    print("---- page state", file=sys.stderr)
    try:
        print(f"url: {driver.current_url}", file=sys.stderr)
        for css in ("#who", "#login-error", "#error"):
            try:
                print(f"{css}: {text_of(driver, css)!r}", file=sys.stderr)
            except WebDriverException as e:
                print(f"{css}: ({e.__class__.__name__})", file=sys.stderr)
        for table in ("queues", "connections"):
            try:
                rows = driver.find_element(By.ID, table).text
                print(f"#{table}:\n{rows}", file=sys.stderr)
            except WebDriverException as e:
                print(f"#{table}: ({e.__class__.__name__})", file=sys.stderr)
        source = driver.page_source
        start = source.find("<main>")
        excerpt = source[start : start + 4000] if start >= 0 else source[:4000]
        print(f"---- page source excerpt ({len(source)} characters in all)\n{excerpt}", file=sys.stderr)
    except WebDriverException as e:
        print(f"(the page cannot be read: {e})", file=sys.stderr)
    print("---- the page's API requests that completed (Resource Timing)", file=sys.stderr)
    try:
        entries = driver.execute_script(
            "return performance.getEntriesByType('resource')"
            ".filter(e => e.name.includes('/api/'))"
            ".map(e => e.name + ' ' + e.responseStatus + ' ' + Math.round(e.duration) + ' ms')"
        )
        for entry in entries[-20:]:
            print(entry, file=sys.stderr)
        if not entries:
            print("(none)", file=sys.stderr)
    except WebDriverException as e:
        print(f"(cannot read them: {e})", file=sys.stderr)
    print("---- browser console log", file=sys.stderr)
    try:
        entries = driver.get_log("browser")
        for entry in entries:
            print(f"{entry.get('level')} {entry.get('message')}", file=sys.stderr)
        if not entries:
            print("(empty)", file=sys.stderr)
    except WebDriverException as e:
        print(f"(cannot read it: {e})", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", required=True)
    parser.add_argument("--amqp", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--chromium", required=True)
    parser.add_argument("--chromedriver", required=True)
    args = parser.parse_args()

    options = webdriver.ChromeOptions()
    options.binary_location = args.chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1024",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(options=options, service=Service(executable_path=args.chromedriver))
    except WebDriverException as e:
        print(f"FAIL: cannot start {args.chromium} through {args.chromedriver}: {e}", file=sys.stderr)
        return 1
    started = time.monotonic()

    def log(step):
        print(f"ok ({time.monotonic() - started:.1f} s): {step}", flush=True)

    try:
        print(f"browser: {driver.capabilities.get('browserVersion')}", flush=True)
        run(driver, args, log)
        print("PASS", flush=True)
        return 0
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        diagnose(driver, args.http.rstrip("/"))
        return 1
    except Exception:
        print("FAIL: an unexpected error", file=sys.stderr)
        traceback.print_exc()
        diagnose(driver, args.http.rstrip("/"))
        return 1
    finally:
        try:
            driver.quit()
        except WebDriverException:
            pass


if __name__ == "__main__":
    sys.exit(main())

# -*- coding: utf-8 -*-
"""Both IM transports (open_url and a requests session) against the loopback receivers: same answers, same errors."""

from __future__ import annotations

import http.server
import os
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from ansible_collections.fleetops.health.plugins.module_utils.im_adapters import Notification, Target, adapter_for
from ansible_collections.fleetops.health.plugins.module_utils.im_delivery import Sender, notifier_for
from ansible_collections.fleetops.health.plugins.module_utils.im_transport import (
    BACKENDS,
    USER_AGENT,
    NoAnswer,
    transport_for,
)
from ansible_collections.fleetops.health.tests.unit.im_receivers import IMReceiver
from ansible_collections.fleetops.health.tests.unit.without_ansible import BLOCK_ANSIBLE

JSON = {"Content-Type": "application/json; charset=utf-8"}


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def post(backend, url, body=b'{"message": "m"}', headers=None, timeout=2, validate_certs=True):
    transport = transport_for(backend, timeout, validate_certs)
    try:
        return transport(url, body, headers or dict(JSON))
    finally:
        transport.close()


def test_an_accepted_message_returns_status_headers_and_body(backend):
    with IMReceiver("dingtalk") as receiver:
        status, headers, body = post(backend, receiver.url, b'{"msgtype":"text","text":{"content":"hi"},"at":{}}')
        request_headers = {k.lower(): v for k, v in receiver.requests[0]["headers"].items()}
    assert status == 200 and body == b'{"errcode": 0, "errmsg": "ok"}'
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert request_headers["user-agent"] == USER_AGENT
    assert request_headers["content-type"] == "application/json; charset=utf-8"
    assert request_headers.get("accept-encoding", "identity") == "identity"
    assert receiver.messages == [{"msgtype": "text", "text": {"content": "hi"}, "at": {}}]


@pytest.mark.parametrize("answer, status, body", [
    ("server_error", 502, b"Bad Gateway"),
    ("no_service", 404, b"no_service"),
    ("rate_limit", 429, b"rate_limited"),
])
def test_error_statuses_are_answers_not_exceptions(backend, answer, status, body):
    with IMReceiver("slack", retry_after=7) as receiver:
        receiver.fail_next(answer)
        got_status, headers, got_body = post(backend, receiver.url)
    assert (got_status, got_body) == (status, body)
    if answer == "rate_limit":
        assert headers["Retry-After"] == "7"


def test_a_redirect_is_returned_not_followed(backend):
    with IMReceiver("webhook") as receiver:
        receiver.fail_next((302, {"Location": receiver.url + "/elsewhere"}, b"moved"))
        status, headers, body = post(backend, receiver.url)
        assert len(receiver.requests) == 1
    assert (status, body) == (302, b"moved") and headers["Location"].endswith("/elsewhere")


def test_a_slow_answer_times_out_within_the_timeout(backend):
    with IMReceiver("webhook") as receiver:
        receiver.fail_next("slow:2")
        started = time.monotonic()
        with pytest.raises(NoAnswer) as caught:
            post(backend, receiver.url, timeout=0.3)
        elapsed = time.monotonic() - started
    assert caught.value.timed_out and str(caught.value) == "timed out"
    assert elapsed < 1.5


def test_a_refused_connection_names_the_cause_without_the_url(backend):
    receiver = IMReceiver("telegram").start()
    receiver.stop()
    with pytest.raises(NoAnswer) as caught:
        post(backend, receiver.url)
    assert isinstance(caught.value.reason, ConnectionRefusedError)
    assert "Connection refused" in str(caught.value)
    assert receiver.token not in str(caught.value) and not caught.value.timed_out


def test_an_unknown_host_is_no_answer(backend):
    with pytest.raises(NoAnswer) as caught:
        post(backend, "http://fleetops-no-such-host.invalid/hooks/tok123456789", timeout=2)
    assert isinstance(caught.value.reason, socket.gaierror)
    assert "tok123456789" not in str(caught.value)


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    return cert, key


@pytest.fixture
def tls_endpoint(self_signed):
    """An HTTPS endpoint with a certificate no CA store trusts; it answers ``ok`` like Slack."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield "https://127.0.0.1:%d/services/T0/B0/abcdefghijklmnopqrstuvwx" % server.server_address[1]
    server.shutdown()
    server.server_close()


def test_an_untrusted_certificate_is_a_cert_error_and_validate_certs_false_accepts_it(backend, tls_endpoint):
    with pytest.raises(NoAnswer) as caught:
        post(backend, tls_endpoint)
    assert isinstance(caught.value.reason, ssl.SSLCertVerificationError)
    assert post(backend, tls_endpoint, validate_certs=False)[:1] == (200,)
    # The Sender turns it into a permanent outcome with the validate_certs hint, whatever the backend.
    log = Sender(adapter_for("slack"), Target("slack", tls_endpoint), retries=3, transport=backend,
                 sleep=lambda s: pytest.fail("a certificate error must not be retried")).send({"text": "x"})
    assert log.outcome.kind == "permanent" and "validate_certs" in log.outcome.hint


def test_both_backends_give_the_sender_the_same_outcomes(tmp_path):
    """Signed DingTalk messages through rate limits, a 5xx and an outage: identical results per backend."""
    results = {}
    for backend in BACKENDS:
        with IMReceiver("dingtalk", secret="SECseam") as receiver:
            spool = tmp_path / backend
            notifier = notifier_for("dingtalk", receiver.url, secret="SECseam", retries=2, retry_delay=0.01,
                                    timeout=2, spool_dir=str(spool), transport=backend)
            receiver.fail_next("rate_limit", "server_error")
            first = notifier.run(Notification("one"))
            receiver.go_down()
            second = notifier.run(Notification("two"))
            receiver.come_back()
            third = notifier.run(Notification("three"), flush=True)
            texts = [m["text"]["content"].split("\n")[1] for m in receiver.messages]
        for result in (first, second, third):
            assert result.pop("target").startswith("dingtalk http://127.0.0.1:")  # the port differs
        results[backend] = (first, second, third, texts, [w.split(" (", 1)[1] for w in notifier.warnings])
    assert results["open_url"] == results["requests"]
    first, second, third, texts, warnings = results["requests"]
    assert warnings == ["not delivered after 3 attempt(s): no answer: [Errno 111] Connection refused)"]
    assert (first["delivered"], first["attempts"], first["status"]) == (True, 3, 0)
    assert (second["delivered"], second["spooled"]) == (False, True)
    assert (third["delivered"], third["flushed"], third["spool_remaining"]) == (True, 1, 0)
    assert texts == ["one", "two", "three"]


def test_unknown_transport_names_the_option():
    with pytest.raises(ValueError, match="transport: must be one of open_url, requests"):
        notifier_for("webhook", "http://127.0.0.1:1/hooks/x", transport="curl")


NO_ANSIBLE = BLOCK_ANSIBLE + textwrap.dedent("""
    sys.path.insert(0, sys.argv[1])
    from ansible_collections.fleetops.health.plugins.module_utils.im_adapters import Notification
    from ansible_collections.fleetops.health.plugins.module_utils.im_delivery import notifier_for
    notifier = notifier_for("webhook", sys.argv[2], retries=0, spool_dir=sys.argv[3], transport="requests")
    result = notifier.run(Notification("from a host program"))
    assert result["delivered"], result
    assert not [m for m in sys.modules if m == "ansible" or m.startswith("ansible.")]
    print("ok")
""")


def test_a_host_program_sends_through_requests_without_ansible_core(tmp_path):
    import ansible_collections
    collections_dir = os.path.dirname(list(ansible_collections.__path__)[0])
    with IMReceiver("webhook") as receiver:
        done = subprocess.run([sys.executable, "-c", NO_ANSIBLE, collections_dir, receiver.url, str(tmp_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=60,
                              check=False)
        assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout
        assert receiver.messages[0]["message"] == "from a host program"

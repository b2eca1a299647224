"""`deadline` bounds the probe task's wall clock (+1 s) on both engines, against servers that dribble.

A server that sends its headers or its body one byte a second never trips a socket timeout: each read
gets its byte in time. The task must still end, process and all, within the deadline.
"""
from __future__ import annotations

import socket
import subprocess
import threading

import pytest

from ansible_collections.fleetops.health.tests.unit.playbook_runner import run_module

DEADLINE = 5
TIMEOUT = 3
# a run that outlives this fails the test instead of hanging the suite
RUN_TIMEOUT = 40
BODY = b"all good " * 6
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)


class DribblingServer(object):
    """Loopback HTTP: /ok answers at once; /slow-headers sends the whole answer one byte a second;
    /slow-body sends the headers at once, then the body one byte a second."""

    def __init__(self):
        self.stopped = threading.Event()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.settimeout(0.2)
        self.base = "http://127.0.0.1:%d" % self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped.is_set():
            try:
                client, _address = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._answer, args=(client,), daemon=True).start()

    def _answer(self, client):
        try:
            client.settimeout(5)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = client.recv(4096)
                if not chunk:
                    return
                request += chunk
            path = request.split(b" ", 2)[1]
            at_once = {b"/ok": len(ANSWER), b"/slow-body": ANSWER.index(b"\r\n\r\n") + 4}.get(path, 0)
            client.sendall(ANSWER[:at_once])
            for index in range(at_once, len(ANSWER)):
                if self.stopped.wait(1.0):
                    return
                client.sendall(ANSWER[index:index + 1])
        except OSError:
            pass
        finally:
            client.close()

    def close(self):
        self.stopped.set()
        self.listener.close()


@pytest.fixture(scope="module")
def dribbling_server():
    server = DribblingServer()
    yield server
    server.close()


def run_probe(engine, event_loop, targets):
    args = {"http_engine": engine, "event_loop": event_loop, "deadline": DEADLINE, "targets": targets,
            # retries keep each target busy until the deadline, so the deadline is what ends the task
            "defaults": {"timeout": TIMEOUT, "retries": 5}}
    try:
        run = run_module("probe", args, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail("probe with http_engine=%s deadline=%s still running after %ss" % (engine, DEADLINE, RUN_TIMEOUT))
    assert run.rc == 0, run.output
    assert run.result["ansible_facts"]["fleet_probes"]["event_loop"] == event_loop
    return run, dict((result["name"], result) for result in run.result["ansible_facts"]["fleet_probes"]["results"])


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
@pytest.mark.parametrize("engine", ["stdlib", "aiohttp"])
def test_deadline_bounds_the_task_against_dribbling_servers(dribbling_server, engine, event_loop):
    def baseline():
        run, results = run_probe(engine, event_loop, [{"name": "ok", "url": dribbling_server.base + "/ok", "body_regex": "all good"}])
        assert results["ok"]["ok"], results
        return run.elapsed

    before = baseline()
    run, results = run_probe(engine, event_loop, [
        {"name": "slow-headers", "url": dribbling_server.base + "/slow-headers"},
        {"name": "slow-body", "url": dribbling_server.base + "/slow-body", "body_regex": "all good"},
    ])
    # what starting Ansible costs on this machine now: the slower of a quick run before and after
    bound = max(before, baseline()) + DEADLINE + 1
    assert run.elapsed < bound, "%s: the task took %.1fs, bound %.1fs" % (engine, run.elapsed, bound)
    assert run.elapsed >= DEADLINE, "ended before the deadline: the dribbling answers did not hold it"
    for name in ("slow-headers", "slow-body"):
        assert results[name]["error_kind"] == "timeout" and not results[name]["ok"], results[name]

"""Fixtures for end-to-end tests: whole playbooks on systemd hosts of the lab (tests/lab/lab.py).

``lab``            session-scoped; starts the lab hosts once per pytest session and removes them at the
                   end. Ask for more hosts than the default 3 with ``@pytest.mark.lab_hosts(N)`` on any
                   test: the session starts the largest number any collected test asks for.
``run_playbook``   runs ansible-playbook with the installed collection and returns a PlaybookResult
                   (rc, stdout, stderr and the parsed output of the ansible.posix.json callback).
``receiver``       an HTTP server on 0.0.0.0 that records what it is sent and answers as scripted;
                   ``receiver.url`` is its address as lab hosts see it.

Environment knobs: FLEETOPS_LAB_HOSTS forces the host count; FLEETOPS_E2E_COLLECTIONS_PATH replaces
the collections path (default: the tree `make install` fills, .cache/collections).

Example::

    @pytest.mark.lab_hosts(2)
    def test_webhook(lab, run_playbook, receiver):
        result = run_playbook("playbooks/notify.yml", limit=lab.hosts[:2],
                              extravars={"webhook_url": receiver.url})
        assert result.ok, result.failure_summary()
        assert receiver.wait_for(2)[0].json["host"] in lab.hosts
"""
from __future__ import annotations

import dataclasses
import json
import os
import queue
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
LAB_DIR = REPO_ROOT / "tests" / "lab"
sys.path.insert(0, str(LAB_DIR))
import lab as host_lab  # noqa: E402  pylint: disable=wrong-import-position

DEFAULT_LAB_HOSTS = 3
# The address lab hosts use for the machine running the tests (podman puts it in their /etc/hosts).
HOST_ADDRESS_FROM_LAB = "host.containers.internal"


def pytest_configure(config):
    config.addinivalue_line("markers", "lab_hosts(n): the test needs at least n lab hosts")


# ------------------------------------------------------------------------------------------------ lab


@dataclasses.dataclass
class LabSession:
    """The running lab of this pytest session.

    ``hosts`` are the inventory names (also container names and hostnames), in order; ``addresses``
    maps them to their IP on the lab network. ``inventory`` is the ssh inventory (about twice as fast
    as the podman one); ``podman_inventory`` reaches the same hosts with containers.podman.podman.
    Every host is in the group ``lab``.
    """

    name: str
    hosts: list
    addresses: dict
    ssh_inventory: Path
    podman_inventory: Path

    @property
    def inventory(self) -> Path:
        return self.ssh_inventory

    def exec(self, host: str, *command: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a command on a host directly (podman exec), bypassing Ansible: for setup and checks."""
        return host_lab.podman("exec", host, *command, check=False, timeout=timeout)


def _requested_host_count(session) -> int:
    if os.environ.get("FLEETOPS_LAB_HOSTS"):
        return int(os.environ["FLEETOPS_LAB_HOSTS"])
    # A test without the marker gets the default, so it counts as asking for DEFAULT_LAB_HOSTS.
    asked = [next((marker.args[0] for marker in item.iter_markers("lab_hosts")), DEFAULT_LAB_HOSTS)
             for item in session.items]
    return max(asked, default=DEFAULT_LAB_HOSTS)


@pytest.fixture(scope="session")
def lab(request):
    """Lab hosts for the whole session, removed at its end (see the module docstring).

    The lab is named after this process, so sessions of several people on one machine do not collide,
    and labs left behind by sessions that died are removed first.
    """
    host_lab.reap_orphaned_labs()
    pid = os.getpid()
    # FLEETOPS_LAB_NAME names the lab of one user among several on a machine (docs/lab.md).
    session_lab = host_lab.Lab(os.environ.get("FLEETOPS_LAB_NAME") or f"fleetops-e2e-{pid}", owner_pid=pid)
    request.addfinalizer(session_lab.down)
    started = session_lab.up(count=_requested_host_count(request.session))
    return LabSession(
        name=session_lab.name,
        hosts=[host.name for host in started],
        addresses={host.name: host.address for host in started},
        ssh_inventory=session_lab.ssh_inventory,
        podman_inventory=session_lab.podman_inventory,
    )


# --------------------------------------------------------------------------------------- run_playbook


@dataclasses.dataclass
class PlaybookResult:
    """What one ansible-playbook run did. ``output`` is the JSON callback's document, or None when the
    run ended before printing it (bad arguments, syntax errors: see ``stderr``)."""

    rc: int
    stdout: str
    stderr: str
    output: dict = None

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def stats(self) -> dict:
        """Per host: ok, changed, failures, unreachable, skipped ... as in the PLAY RECAP."""
        return (self.output or {}).get("stats", {})

    def task_results(self, task_name: str) -> dict:
        """{host: result} of the last task with this name (a registered result, as a task sees it)."""
        found = {}
        for play in (self.output or {}).get("plays", []):
            for task in play.get("tasks", []):
                if task["task"]["name"] == task_name:
                    found = task["hosts"]
        if not found:
            raise KeyError(f"no task named {task_name!r} ran; tasks: {self.task_names()}")
        return found

    def task_names(self) -> list:
        return [task["task"]["name"] for play in (self.output or {}).get("plays", [])
                for task in play.get("tasks", [])]

    def failure_summary(self) -> str:
        """The failed tasks and their messages, for an assertion message."""
        lines = [f"ansible-playbook rc={self.rc}"]
        for play in (self.output or {}).get("plays", []):
            for task in play.get("tasks", []):
                for host, result in task["hosts"].items():
                    if result.get("failed") or result.get("unreachable"):
                        lines.append(f"{host}: {task['task']['name']}: {result.get('msg', result)}")
        if self.output is None:
            lines.append(self.stderr.strip() or self.stdout.strip())
        return "\n".join(lines)


def ansible_env() -> dict:
    """Environment for ansible-playbook: the installed collection tree and the repository's ansible.cfg."""
    collections = os.environ.get("FLEETOPS_E2E_COLLECTIONS_PATH", str(REPO_ROOT / ".cache" / "collections"))
    return dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=collections,
        ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_DEPRECATION_WARNINGS="0",
        CONTAINERS_CONF=str(host_lab.CONTAINERS_CONF),
    )


@pytest.fixture(scope="session")
def run_playbook(request):
    """Return ``run(playbook, inventory=None, extravars=None, check=False, limit=None, timeout=600, options=())``.

    ``playbook`` is a path or a collection playbook name (fleetops.health.sweep). Without
    ``inventory`` the session's lab (ssh inventory) is used, starting it if needed. ``extravars`` go
    in as JSON, so types survive. ``limit`` takes a pattern or a list of hosts. ``options`` are more
    command-line arguments (``["--tags", "remediate_plan"]``).
    """
    def run(playbook, inventory=None, extravars=None, check=False, limit=None, timeout=600, options=()):
        if inventory is None:
            inventory = request.getfixturevalue("lab").inventory
        command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), str(playbook)]
        if extravars:
            command += ["--extra-vars", json.dumps(extravars)]
        if check:
            command.append("--check")
        if limit:
            command += ["--limit", limit if isinstance(limit, str) else ",".join(limit)]
        command += list(options)
        completed = subprocess.run(command, env=ansible_env(), cwd=REPO_ROOT, capture_output=True, text=True,
                                   timeout=timeout, check=False)
        try:
            output = json.loads(completed.stdout)
        except ValueError:
            output = None
        return PlaybookResult(completed.returncode, completed.stdout, completed.stderr, output)

    return run


# ------------------------------------------------------------------------------------------- receiver


@dataclasses.dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict
    body: bytes
    client: str

    @property
    def json(self):
        """The body parsed as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclasses.dataclass
class ScriptedResponse:
    status: int = 200
    body: object = dataclasses.field(default_factory=lambda: {"ok": True})
    headers: dict = dataclasses.field(default_factory=dict)
    delay: float = 0.0


class Receiver:
    """An HTTP server on 0.0.0.0 (random port) that records every request and answers as scripted.

    ``url`` is how lab hosts reach it, ``local_url`` how this machine does. ``respond(...)`` queues
    answers, used one per request in order; when the queue is empty it answers 200 {"ok": true}.
    A dict or list body is sent as JSON. ``delay`` holds the answer back, to test client timeouts.
    ``requests`` lists every ReceivedRequest (method, path, headers, body, .json, client).
    """

    def __init__(self) -> None:
        self.requests = []
        self._script = queue.Queue()
        self._arrived = threading.Condition()
        self._server = ThreadingHTTPServer(("0.0.0.0", 0), self._handler_class())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://{HOST_ADDRESS_FROM_LAB}:{self.port}"
        self.local_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="receiver", daemon=True)
        self._thread.start()

    def respond(self, status: int = 200, body=None, headers=None, delay: float = 0.0, times: int = 1) -> None:
        """Answer the next ``times`` requests with this status, body (default {"ok": true}) and headers."""
        response = ScriptedResponse(status, {"ok": True} if body is None else body, headers or {}, delay)
        for _answer in range(times):
            self._script.put(response)

    def wait_for(self, count: int, timeout: float = 10) -> list:
        """Wait until ``count`` requests have arrived; return all received so far (fails on timeout)."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.requests) >= count, timeout=timeout):
                raise AssertionError(f"receiver: {len(self.requests)} of {count} request(s) after {timeout}s")
            return list(self.requests)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next_response(self) -> ScriptedResponse:
        try:
            return self._script.get_nowait()
        except queue.Empty:
            return ScriptedResponse()

    def _record(self, request: ReceivedRequest) -> None:
        with self._arrived:
            self.requests.append(request)
            self._arrived.notify_all()

    def _handler_class(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                receiver._record(ReceivedRequest(self.command, self.path, dict(self.headers.items()), body,
                                                 self.client_address[0]))
                response = receiver._next_response()
                time.sleep(response.delay)
                payload = response.body
                if isinstance(payload, (dict, list)):
                    payload = json.dumps(payload).encode()
                    self.send_response(response.status)
                    self.send_header("Content-Type", "application/json")
                else:
                    payload = payload.encode() if isinstance(payload, str) else bytes(payload or b"")
                    self.send_response(response.status)
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format, *args):  # pylint: disable=redefined-builtin
                pass  # requests are in receiver.requests; stderr noise would hide test output

        return Handler


@pytest.fixture
def receiver():
    """A fresh Receiver per test (see the class); closed after the test."""
    server = Receiver()
    yield server
    server.close()

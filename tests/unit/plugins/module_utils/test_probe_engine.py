"""The probe engine against real loopback servers, with both HTTP engines (aiohttp and the stdlib fallback)."""
import datetime
import gzip
import http.server
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

from ansible_collections.fleetops.health.plugins.module_utils import probe_engine
from ansible_collections.fleetops.health.plugins.module_utils.probe_engine import ProbeEngine
from ansible_collections.fleetops.health.plugins.module_utils.probe_targets import build_targets

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

ENGINES = ["aiohttp", "stdlib"]
SLOW_SECONDS = 2.0


class Handler(http.server.BaseHTTPRequestHandler):
    flaky_hits = {}

    def log_message(self, *args):
        pass

    def _answer(self, code, body=b"all good", extra=None):
        self.send_response(code)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/ok":
            self._answer(200)
        elif self.path == "/moved":
            self._answer(301, b"", {"Location": "/ok"})
        elif self.path == "/loop":
            self._answer(302, b"", {"Location": "/loop"})
        elif self.path == "/down":
            self._answer(503, b"maintenance")
        elif self.path == "/slow":
            time.sleep(SLOW_SECONDS)
            self._answer(200)
        elif self.path == "/dribble":
            # every read gets a byte in time, so only a bound on the whole attempt ends it
            self.send_response(200)
            self.send_header("Content-Length", "20")
            self.end_headers()
            for _byte in range(20):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.5)
        elif self.path.startswith("/delay"):
            time.sleep(0.2)
            self._answer(200)
        elif self.path.startswith("/flaky"):
            hits = Handler.flaky_hits[self.path] = Handler.flaky_hits.get(self.path, 0) + 1
            self._answer(503 if hits == 1 else 200)
        elif self.path == "/big":
            self._answer(200, b"x" * 300000 + b"END-MARKER")
        elif self.path == "/gzip-if-asked":
            # Like nginx with gzip on: compress whenever the client says it accepts gzip.
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                self._answer(200, gzip.compress(b"all good"), {"Content-Encoding": "gzip"})
            else:
                self._answer(200)
        elif self.path == "/auth":
            self._answer(200 if self.headers.get("Authorization") == "Bearer s3cret" else 401)
        else:
            self._answer(404, b"no such page")

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        self._answer(201, b"got " + self.rfile.read(length))


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        """Clients that time out on purpose hang up mid-answer; that is expected here."""


def _serve(server):
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


@pytest.fixture(scope="module")
def http_base():
    server = _serve(QuietServer(("127.0.0.1", 0), Handler))
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 and localhost that expires in 5 days."""
    directory = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, u"localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=5))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(u"localhost"),
                                                        x509.IPAddress(ipaddress.ip_address(u"127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.fixture(scope="module")
def https_port(cert_files):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*cert_files)
    server = QuietServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    _serve(server)
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture
def closed_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def probe(engine, *targets, **engine_options):
    built, _secrets = build_targets(list(targets))
    results, warnings = ProbeEngine(engine, **engine_options).run(built)
    assert warnings == []
    return results


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("path, options, ok, code, error_kind", [
    ("/ok", {}, True, 200, None),
    ("/moved", {}, True, 200, None),
    ("/moved", {"follow_redirects": False}, True, 301, None),
    ("/moved", {"follow_redirects": False, "expect_status": [200]}, False, 301, "status"),
    ("/down", {}, False, 503, "status"),
    ("/down", {"expect_status": ["500-503"]}, True, 503, None),
    ("/ok", {"body_regex": "^all go+d$"}, True, 200, None),
    ("/ok", {"body_regex": "healthy"}, False, 200, "body"),
    ("/big", {"body_regex": "END-MARKER$"}, True, 200, None),
    ("/gzip-if-asked", {"body_regex": "^all good$"}, True, 200, None),
    ("/loop", {}, False, None, "status"),
    ("/auth", {"headers": {"Authorization": "Bearer s3cret"}}, True, 200, None),
    ("/auth", {}, False, 401, "status"),
])
def test_http_outcomes(http_base, engine, path, options, ok, code, error_kind):
    result, = probe(engine, dict(name="t", url=http_base + path, **options))
    assert (result["ok"], result["code"], result["error_kind"]) == (ok, code, error_kind), result
    assert result["kind"] == "http"
    assert (result["error"] is None) == ok
    if code is not None:
        assert 0 < result["latency_ms"] < 1000


@pytest.mark.parametrize("engine", ENGINES)
def test_post_body_and_method(http_base, engine):
    result, = probe(engine, dict(name="post", url=http_base + "/submit", method="POST", body="ping",
                                 expect_status=[201], body_regex="got ping"))
    assert result["ok"] and result["code"] == 201, result


@pytest.mark.parametrize("engine", ENGINES)
def test_slow_answer_times_out(http_base, engine):
    started = time.monotonic()
    result, = probe(engine, dict(name="slow", url=http_base + "/slow", timeout=0.3))
    assert result["error_kind"] == "timeout" and not result["ok"], result
    assert result["latency_ms"] is None
    assert time.monotonic() - started < SLOW_SECONDS


@pytest.mark.parametrize("engine", ENGINES)
def test_timeout_bounds_the_whole_attempt_against_a_dribbling_body(http_base, engine):
    started = time.monotonic()
    result, = probe(engine, dict(name="dribble", url=http_base + "/dribble", body_regex="x{20}", timeout=1))
    assert result["error_kind"] == "timeout", result
    assert time.monotonic() - started < 1.8  # the body alone takes 10 s, each byte within the 1 s timeout


@pytest.mark.parametrize("engine", ENGINES)
def test_refused_and_dns(engine, closed_port):
    results = probe(engine,
                    dict(name="http-refused", url="http://127.0.0.1:%d/" % closed_port),
                    dict(name="tcp-refused", tcp="127.0.0.1:%d" % closed_port),
                    dict(name="http-dns", url="http://probe-target.invalid/"),
                    dict(name="tcp-dns", tcp="probe-target.invalid:80"))
    assert [(r["name"], r["error_kind"]) for r in results] == [
        ("http-refused", "refused"), ("tcp-refused", "refused"), ("http-dns", "dns"), ("tcp-dns", "dns")]
    assert [r["kind"] for r in results] == ["http", "tcp", "http", "tcp"]
    assert not any(r["ok"] for r in results)


def test_tcp_connect_succeeds(http_base):
    result, = probe("stdlib", dict(name="tcp", tcp="127.0.0.1:%s" % http_base.rsplit(":", 1)[1]))
    assert result["ok"] and result["code"] is None and result["latency_ms"] is not None


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("trust, cert_min_days, ok, error_kind", [
    ("none", None, True, None),
    ("system", None, False, "tls"),  # self-signed: not in the system store
    ("ca_path", None, True, None),
    ("ca_path", 7, False, "tls"),
    ("ca_path", 3, True, None),
])
def test_https_certificates(engine, https_port, cert_files, trust, cert_min_days, ok, error_kind):
    options = {"none": {"validate_certs": False}, "system": {}, "ca_path": {"ca_path": cert_files[0]}}[trust]
    if cert_min_days is not None:
        options["cert_min_days"] = cert_min_days
    result, = probe(engine, dict(name="https", url="https://127.0.0.1:%d/ok" % https_port, **options))
    assert (result["ok"], result["error_kind"]) == (ok, error_kind), result
    if trust != "system":
        assert 4.8 <= result["cert_days_left"] <= 5.0
        assert result["code"] == 200
    else:
        assert "certificate verify failed" in result["error"]
    if cert_min_days == 7:
        assert "below cert_min_days 7" in result["error"]


def test_tls_target_reports_certificate(https_port, cert_files):
    results = probe("aiohttp",
                    dict(name="verified", tls="127.0.0.1:%d" % https_port, ca_path=cert_files[0]),
                    dict(name="unverified", tls="localhost:%d" % https_port, validate_certs=False, cert_min_days=30),
                    dict(name="untrusted", tls="127.0.0.1:%d" % https_port))
    verified, unverified, untrusted = results
    assert verified["ok"] and verified["kind"] == "tls" and 4.8 <= verified["cert_days_left"] <= 5.0
    assert unverified["error_kind"] == "tls" and 4.8 <= unverified["cert_days_left"] <= 5.0
    assert untrusted["error_kind"] == "tls" and "certificate verify failed" in untrusted["error"]


@pytest.mark.parametrize("engine", ENGINES)
def test_deadline_bounds_the_call(http_base, engine):
    started = time.monotonic()
    results = probe(engine, *[dict(name="slow%d" % index, url=http_base + "/slow", timeout=10) for index in range(3)],
                    deadline=0.4)
    assert time.monotonic() - started < SLOW_SECONDS - 0.2  # waiting for the answers would take SLOW_SECONDS
    assert [r["error_kind"] for r in results] == ["timeout"] * 3


def test_deadline_marks_queued_targets(http_base):
    """With concurrency 1 the later targets never start; they still get a timeout result."""
    results = probe("aiohttp", *[dict(name="d%d" % index, url=http_base + "/delay?%d" % index) for index in range(5)],
                    concurrency=1, deadline=0.7)
    kinds = [r["error_kind"] for r in results]
    assert kinds[0] is None and kinds[3:] == ["timeout", "timeout"]  # the 4th would end at 0.8 s, the 5th at 1 s
    assert "deadline" in results[-1]["error"]


@pytest.mark.parametrize("engine", ENGINES)
def test_probes_run_concurrently(http_base, engine):
    started = time.monotonic()
    results = probe(engine, *[dict(name="d%d" % index, url=http_base + "/delay?%d" % index) for index in range(20)],
                    concurrency=20)
    assert all(r["ok"] for r in results)
    assert time.monotonic() - started < 3.0  # 20 x 0.2 s would take 4 s one by one


@pytest.mark.parametrize("engine", ENGINES)
def test_retries_recover_a_flaky_endpoint(http_base, engine):
    first, second = probe(engine, dict(name="no-retry", url=http_base + "/flaky-a-" + engine),
                          dict(name="retry", url=http_base + "/flaky-b-" + engine, retries=1))
    assert first["error_kind"] == "status" and second["ok"]


def test_results_keep_target_order_and_shape(http_base, closed_port):
    results = probe("aiohttp", dict(name="z", url=http_base + "/ok"), dict(name="a", tcp="127.0.0.1:%d" % closed_port))
    assert [r["name"] for r in results] == ["z", "a"]
    assert set(results[0]) == {"name", "kind", "ok", "code", "latency_ms", "cert_days_left", "error", "error_kind"}


def test_summary_percentiles():
    results = [dict(ok=True, latency_ms=float(value)) for value in range(1, 101)] + [dict(ok=False, latency_ms=None)]
    summary = probe_engine.summarize(results, 12.34)
    assert summary == dict(total=101, up=100, down=1, p50_latency_ms=50.0, p95_latency_ms=95.0, duration_ms=12.3)
    assert probe_engine.summarize([], 0)["p50_latency_ms"] is None


def test_fd_budget_raises_soft_limit_or_lowers_concurrency():
    script = (
        "import resource, sys\n"
        "from ansible_collections.fleetops.health.plugins.module_utils.probe_engine import ensure_fd_budget\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (100, 1000))\n"
        "print(ensure_fd_budget(200), resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (100, 150))\n"
        "print(ensure_fd_budget(200))\n")
    output = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))).stdout.splitlines()
    assert output[0] == "(200, None) 264"
    assert output[1].startswith("(86, 'concurrency 200 needs 264 open files but the limit is 150")


@pytest.mark.parametrize("engine", ENGINES)
def test_hanging_name_lookup_does_not_hold_the_process_past_the_deadline(engine):
    """A resolver that never answers: the results come at the deadline and the process exits right after."""
    script = ("import socket, sys, threading, time\n"
              "from ansible_collections.fleetops.health.plugins.module_utils.probe_engine import ProbeEngine\n"
              "from ansible_collections.fleetops.health.plugins.module_utils.probe_targets import build_targets\n"
              "targets, _secrets = build_targets([dict(name='web', url='http://hangs.example/'),\n"
              "                                   dict(name='db', tcp='hangs.example:5432')])\n"
              "# after build_targets: ansible's argument validator, imported on first use, calls getaddrinfo\n"
              "socket.getaddrinfo = lambda *args, **kwargs: threading.Event().wait(60)\n"
              "started = time.monotonic()\n"
              "results, _warnings = ProbeEngine(sys.argv[1], deadline=1).run(targets)\n"
              "print(round(time.monotonic() - started, 1), [result['error_kind'] for result in results])\n")
    started = time.monotonic()
    output = subprocess.run([sys.executable, "-c", script, engine], check=True, capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)), timeout=30).stdout
    # a joined lookup thread would hold the exit for the 60 s it sleeps
    assert time.monotonic() - started < 4, output
    assert output.split(" ", 1)[1].strip() == "['timeout', 'timeout']", output


def test_auto_engine_falls_back_to_stdlib_without_aiohttp():
    script = ("import sys\nsys.modules['aiohttp'] = None\n"
              "from ansible_collections.fleetops.health.plugins.module_utils import probe_engine as e\n"
              "print(e.choose_engine('auto'))\n"
              "try:\n    e.choose_engine('aiohttp')\nexcept ImportError as exc:\n    print('missing', exc)\n")
    output = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))).stdout.split()
    assert output == ["stdlib", "missing", "aiohttp"]
    assert probe_engine.choose_engine("auto") == "aiohttp"


def test_cert_days_left_reads_der_and_tolerates_garbage(cert_files):
    with open(cert_files[0]) as handle:
        der = ssl.PEM_cert_to_DER_cert(handle.read())
    now = datetime.datetime.now(datetime.timezone.utc)
    assert probe_engine.cert_days_left(der, now) == 5.0
    assert probe_engine.cert_days_left(der, now + datetime.timedelta(days=7)) == -2.0
    assert probe_engine.cert_days_left(b"\x30\x03\x02\x01") is None

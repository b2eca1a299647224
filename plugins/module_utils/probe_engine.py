# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run HTTP, TCP and TLS probes concurrently on one asyncio loop, bounded by a semaphore and a deadline.

HTTP goes through aiohttp when it is importable, else through http.client in threads; TCP and TLS
use asyncio streams and ssl. Each probe returns one flat result dict; nothing here raises for a
failing endpoint. ``deadline`` bounds the wall clock of ``run()`` and of the process after it: no
thread is left that the interpreter would wait for at exit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import http.client as http_client
import math
import socket
import ssl
import threading
import time
from urllib.parse import urljoin, urlsplit

from ansible_collections.fleetops.health.plugins.module_utils.redaction import mask_text

try:
    import resource
except ImportError:  # pragma: no cover - not on Linux
    resource = None

try:
    import aiohttp
    AIOHTTP_IMPORT_ERROR = None
except ImportError as aiohttp_exc:  # pragma: no cover - depends on the host
    aiohttp = None
    AIOHTTP_IMPORT_ERROR = aiohttp_exc

ENGINE_AIOHTTP = "aiohttp"
ENGINE_STDLIB = "stdlib"
MAX_REDIRECTS = 10
BODY_LIMIT = 1024 * 1024
USER_AGENT = "fleetops.health-probe"
# body_regex must see the page's text: without this, aiohttp asks for gzip and servers like nginx comply.
DEFAULT_HEADERS = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
# Sockets the process needs besides the probes themselves (stdio, the loop, the resolver threads).
FD_HEADROOM = 64
REDIRECT_CODES = (301, 302, 303, 307, 308)
# aiohttp >= 3.10 names a redirect to file:// or a malformed Location; older versions raise other errors.
_AIOHTTP_REDIRECT_ERRORS = tuple(getattr(aiohttp, name) for name in (
    "NonHttpUrlRedirectClientError", "InvalidUrlRedirectClientError") if aiohttp is not None and hasattr(aiohttp, name))


class UnsupportedRedirect(http_client.HTTPException):
    """The endpoint redirected to a location that is not http(s): a bad answer, not a refused connection."""


def choose_engine(requested):
    """Return the HTTP engine to use for ``requested`` (auto, aiohttp or stdlib)."""
    if requested == ENGINE_STDLIB or (requested == "auto" and aiohttp is None):
        return ENGINE_STDLIB
    if aiohttp is None:
        raise ImportError("aiohttp")
    return ENGINE_AIOHTTP


def ensure_fd_budget(concurrency):
    """Raise the soft RLIMIT_NOFILE so ``concurrency`` sockets fit; return ``(concurrency, warning)``.

    When the hard limit is too low, concurrency shrinks to what fits and the warning says so.
    """
    if resource is None:
        return concurrency, None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = concurrency + FD_HEADROOM
    if soft != resource.RLIM_INFINITY and soft < needed:
        new_soft = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
            soft = new_soft
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < needed:
        fitting = max(1, soft - FD_HEADROOM)
        return fitting, ("concurrency %d needs %d open files but the limit is %d (hard %s); probing with concurrency %d. "
                         "Raise the limit (ulimit -n, LimitNOFILE=) or lower concurrency"
                         % (concurrency, needed, soft, hard, fitting))
    return concurrency, None


def der_not_after(der):
    """Return the notAfter time of a DER certificate as an aware UTC datetime.

    The certificate is read with a few lines of DER walking because ``getpeercert()`` returns nothing
    when verification is off, and we still want the expiry of an unverified certificate.
    """
    def read(pos):
        tag, length = der[pos], der[pos + 1]
        pos += 2
        if length & 0x80:
            count = length & 0x7F
            length = int.from_bytes(der[pos:pos + count], "big")
            pos += count
        return tag, pos, pos + length

    _tag, cert_start, _end = read(0)
    _tag, pos, _end = read(cert_start)  # tbsCertificate
    tag, _start, end = read(pos)
    if tag == 0xA0:  # explicit version
        pos = end
    for _skipped in ("serialNumber", "signature", "issuer"):
        pos = read(pos)[2]
    _tag, validity, _end = read(pos)
    not_before_end = read(validity)[2]
    tag, start, end = read(not_before_end)
    text = der[start:end].decode("ascii")
    stamp = datetime.datetime.strptime(text, "%y%m%d%H%M%SZ" if tag == 0x17 else "%Y%m%d%H%M%SZ")
    return stamp.replace(tzinfo=datetime.timezone.utc)


def cert_days_left(der, now=None):
    """Days until the certificate expires, or None when its DER cannot be read."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    try:
        return round((der_not_after(der) - now).total_seconds() / 86400.0, 1)
    except (IndexError, ValueError):
        return None


def classify_error(exc):
    """Map an exception to ``(error_kind, message)``; error_kind is dns, refused, timeout, tls or status."""
    seen = []
    pending = [exc]
    while pending:
        current = pending.pop(0)
        if current is None or any(current is known for known in seen):
            continue
        seen.append(current)
        if isinstance(current, socket.gaierror):
            return "dns", "name does not resolve (%s)" % (current.strerror or current)
        if isinstance(current, ConnectionRefusedError):
            return "refused", "connection refused"
        if isinstance(current, (asyncio.TimeoutError, socket.timeout, TimeoutError)):
            return "timeout", "timed out"
        if isinstance(current, ssl.CertificateError):
            return "tls", "certificate verify failed: %s" % (getattr(current, "verify_message", None) or current)
        if isinstance(current, ssl.SSLError):
            return "tls", "TLS handshake failed: %s" % (current.reason or current)
        if isinstance(current, http_client.HTTPException) and not isinstance(current, ConnectionError):
            return "status", "invalid HTTP answer: %s" % (current,)
        pending.extend([getattr(current, "os_error", None), getattr(current, "certificate_error", None),
                        current.__cause__, current.__context__])
    if aiohttp is not None and isinstance(exc, aiohttp.TooManyRedirects):
        return "status", "more than %d redirects" % MAX_REDIRECTS
    if _AIOHTTP_REDIRECT_ERRORS and isinstance(exc, _AIOHTTP_REDIRECT_ERRORS):
        return "status", "invalid HTTP answer: redirect to %s, which is not an http(s) URL" % (exc,)
    # Resets, unreachable networks and servers that hang up before answering: no usable connection.
    return "refused", "connection failed: %s" % (exc or type(exc).__name__)


def status_matches(code, ranges):
    return any(low <= code <= high for low, high in ranges)


def make_result(target, **values):
    result = dict(name=target.name, kind="http" if target.kind == "url" else target.kind, ok=False, code=None,
                  latency_ms=None, cert_days_left=None, error=None, error_kind=None)
    result.update(values)
    return result


def judge_http(target, code, body, days_left):
    """Decide ok/error for an HTTP answer: status first, then body, then certificate age."""
    if not status_matches(code, target.status_ranges):
        return "status", "status %d is not in expect_status %s" % (code, _format_ranges(target.status_ranges))
    if target.body_pattern is not None and not target.body_pattern.search(body or b""):
        return "body", "body does not match body_regex %r" % target.body_pattern.pattern.decode("utf-8", "replace")
    return judge_cert(target, days_left)


def judge_cert(target, days_left):
    minimum = target.options["cert_min_days"]
    if minimum is not None and days_left is not None and days_left < minimum:
        return "tls", "certificate expires in %.1f days, below cert_min_days %s" % (days_left, minimum)
    return None, None


def _format_ranges(ranges):
    return ",".join(str(low) if low == high else "%d-%d" % (low, high) for low, high in ranges)


def percentile(values, fraction):
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, int(math.ceil(fraction * len(ordered))) - 1)]


def summarize(results, duration_ms):
    latencies = [result["latency_ms"] for result in results if result["latency_ms"] is not None]
    up = sum(1 for result in results if result.get("state", "up" if result["ok"] else "down") == "up")
    return dict(total=len(results), up=up, down=len(results) - up,
                p50_latency_ms=percentile(latencies, 0.50), p95_latency_ms=percentile(latencies, 0.95),
                duration_ms=round(duration_ms, 1))


async def read_body(stream):
    """Up to BODY_LIMIT bytes; a single read() returns only what has arrived so far."""
    chunks, size = [], 0
    while size < BODY_LIMIT:
        chunk = await stream.read(BODY_LIMIT - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class AbandonableExecutor(concurrent.futures.ThreadPoolExecutor):
    """Runs each call in a daemon thread of its own, which nothing waits for.

    A ThreadPoolExecutor's workers are joined when the interpreter exits, so one thread blocked in a read
    that a server feeds a byte a second, or in a name lookup that hangs, keeps the process alive long
    after the results are final. Daemon threads are abandoned at exit instead. This is a
    ThreadPoolExecutor only because asyncio takes nothing else as a loop's default executor; the
    engine's concurrency gate bounds how many calls run at once.
    """

    def __init__(self):
        super(AbandonableExecutor, self).__init__(max_workers=1)

    def submit(self, fn, *args, **kwargs):  # pylint: disable=arguments-differ
        future = concurrent.futures.Future()

        def call():
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the waiting coroutine, as a pool worker does
                future.set_exception(exc)
            else:
                future.set_result(result)

        threading.Thread(target=call, name="probe-call", daemon=True).start()
        return future

    def shutdown(self, wait=True, *args, **kwargs):  # pylint: disable=arguments-differ,keyword-arg-before-vararg
        """Nothing to join or stop: the threads are daemons."""


class StdlibAttempt(object):
    """The connection one stdlib attempt is using, so that the loop can cut it at the attempt's end.

    http.client's timeout bounds each socket operation, not the request: a server that sends a byte a
    second never trips it. When the attempt's time is up, the loop shuts the socket down under the
    thread, whose blocked read then returns at once.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._connection = None
        self._ended = False

    def use(self, connection):
        """Register a connected connection; raise socket.timeout if the attempt has already ended."""
        with self._lock:
            if self._ended:
                raise socket.timeout("timed out")
            self._connection = connection

    def end(self):
        with self._lock:
            self._ended = True
            sock = self._connection.sock if self._connection is not None else None
        if sock is not None:
            try:
                # the plain socket's shutdown: SSLSocket.shutdown would also drop its SSL state under the thread
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the thread itself


if aiohttp is not None:
    class CertRecordingResponse(aiohttp.ClientResponse):
        """Keeps the peer certificate: aiohttp hands a small answer's connection back before we can look."""

        peer_cert_der = None

        async def start(self, connection):
            transport = connection.transport
            ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
            if ssl_object is not None:
                self.peer_cert_der = ssl_object.getpeercert(binary_form=True)
            return await super(CertRecordingResponse, self).start(connection)


class ProbeEngine(object):
    """Probe many targets at once: ``ProbeEngine(...).run(targets)`` returns ``(results, warnings)``."""

    def __init__(self, http_engine="auto", concurrency=200, deadline=60.0):
        self.http_engine = choose_engine(http_engine)
        self.concurrency, fd_warning = ensure_fd_budget(concurrency)
        self.deadline = deadline
        self.warnings = [fd_warning] if fd_warning else []
        self._ssl_contexts = {}
        self._deadline_at = None
        self._session = None

    def run(self, targets):
        loop = asyncio.new_event_loop()
        # name lookups (both engines) and stdlib HTTP run in the loop's default executor
        loop.set_default_executor(AbandonableExecutor())
        try:
            results = loop.run_until_complete(self._run_all(targets))
        finally:
            loop.close()
        return results, self.warnings

    async def _run_all(self, targets):
        self._deadline_at = time.monotonic() + self.deadline
        gate = asyncio.Semaphore(self.concurrency)
        if self.http_engine == ENGINE_AIOHTTP:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, force_close=True), response_class=CertRecordingResponse,
                # Targets are independent: no cookie one sets may reach another.
                cookie_jar=aiohttp.DummyCookieJar(), headers=DEFAULT_HEADERS, auto_decompress=False)
        tasks = [asyncio.ensure_future(self._gated(gate, target)) for target in targets]
        try:
            _done, pending = await asyncio.wait(tasks, timeout=self.deadline) if tasks else (set(), set())
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        finally:
            if self._session is not None:
                await self._session.close()
        results = []
        for target, task in zip(targets, tasks):
            if task.cancelled():
                results.append(make_result(target, error_kind="timeout",
                                           error="not finished within the deadline of %ss" % self.deadline))
            else:
                results.append(task.result())
        return results

    async def _gated(self, gate, target):
        async with gate:
            attempt = 0
            while True:
                result = await self._probe_once(target)
                if result["ok"] or attempt >= target.options["retries"] or self._remaining() <= 0:
                    return result
                attempt += 1

    def _remaining(self):
        return self._deadline_at - time.monotonic()

    def _attempt_timeout(self, target):
        return min(target.options["timeout"], max(self._remaining(), 0.001))

    async def _probe_once(self, target):
        started = time.monotonic()
        timeout = self._attempt_timeout(target)
        try:
            if target.kind == "url":
                if self.http_engine == ENGINE_AIOHTTP:
                    code, body, der = await self._http_aiohttp(target, timeout)
                else:
                    code, body, der = await self._http_stdlib_bounded(target, timeout)
            else:
                code, body, der = None, None, await asyncio.wait_for(self._connect(target), timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure of one endpoint becomes its result, never the module's
            kind, message = classify_error(exc)
            if kind == "timeout":
                message = "timed out after %.3gs" % timeout
            # Client errors may quote the URL: its userinfo and tokens stay out of the results.
            return make_result(target, error_kind=kind, error=mask_text(message))
        latency_ms = round((time.monotonic() - started) * 1000.0, 1)
        days_left = cert_days_left(der) if der else None
        if target.kind == "url":
            error_kind, error = judge_http(target, code, body, days_left)
        else:
            error_kind, error = judge_cert(target, days_left)
        return make_result(target, ok=error_kind is None, code=code, latency_ms=latency_ms, cert_days_left=days_left,
                           error=error, error_kind=error_kind)

    def _ssl_context(self, target):
        """A verifying (or, with validate_certs false, a non-verifying) context, one per distinct setting."""
        key = (target.options["validate_certs"], target.options["ca_path"])
        context = self._ssl_contexts.get(key)
        if context is None:
            if key[0]:
                context = ssl.create_default_context(cafile=key[1])
            else:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._ssl_contexts[key] = context
        return context

    async def _connect(self, target):
        """TCP connect, plus the handshake for tls targets; return the peer certificate (DER) or None."""
        context = self._ssl_context(target) if target.kind == "tls" else None
        reader, writer = await asyncio.open_connection(target.host, target.port, ssl=context,
                                                       server_hostname=target.host if context else None)
        try:
            ssl_object = writer.get_extra_info("ssl_object")
            return ssl_object.getpeercert(binary_form=True) if ssl_object else None
        finally:
            writer.close()

    async def _http_aiohttp(self, target, timeout):
        options = target.options
        async with self._session.request(
                options["method"], target.url, headers=options["headers"] or None, data=options["body"],
                allow_redirects=options["follow_redirects"], max_redirects=MAX_REDIRECTS,
                ssl=self._ssl_context(target) if target.scheme == "https" else None,
                timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            body = await read_body(response.content) if target.body_pattern is not None else None
            return response.status, body, response.peer_cert_der

    async def _http_stdlib_bounded(self, target, timeout):
        """The stdlib request in a thread, ended at ``timeout`` in all, as aiohttp's total timeout does."""
        attempt = StdlibAttempt()
        try:
            return await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(
                None, self._http_stdlib, target, timeout, attempt), timeout)
        finally:
            # timed out, cancelled at the deadline, or done: the thread must not read on
            attempt.end()

    def _http_stdlib(self, target, timeout, attempt):
        """Blocking HTTP with http.client, following redirects by hand as http.client does not."""
        options = target.options
        url, method, body = target.url, options["method"], options["body"]
        for _hop in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme == "https":
                connection = http_client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                                         context=self._ssl_context(target))
            else:
                connection = http_client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
            try:
                connection.connect()
                attempt.use(connection)
                # Read the certificate now: http.client drops the socket once a closing answer arrives.
                der = connection.sock.getpeercert(binary_form=True) if parts.scheme == "https" else None
                path = parts.path or "/"
                headers = dict(DEFAULT_HEADERS, **(options["headers"] or {}))
                connection.request(method, path + ("?" + parts.query if parts.query else ""),
                                   body=body.encode("utf-8") if body is not None else None, headers=headers)
                response = connection.getresponse()
                location = response.getheader("Location")
                if options["follow_redirects"] and response.status in REDIRECT_CODES and location:
                    url = urljoin(url, location)
                    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
                        raise UnsupportedRedirect("redirect to %s, which is not an http(s) URL" % url)
                    if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                        method, body = "GET", None
                    continue
                payload = response.read(BODY_LIMIT) if target.body_pattern is not None else None
                return response.status, payload, der
            finally:
                connection.close()
        raise http_client.HTTPException("more than %d redirects" % MAX_REDIRECTS)

# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The HTTP seam under the IM sender: one call shape, two backends.

``transport_for(backend, timeout, validate_certs)`` returns a callable
``transport(url, body, headers) -> (status, headers, body)``:

* ``open_url``: Ansible's own client (``ansible.module_utils.urls.Request``). Modules and the controller use it,
  so a managed host needs nothing beyond what Ansible ships.
* ``requests``: a pooled ``requests.Session`` (keep-alive). Host programs (the agent, the probes runner) use it;
  they run without ansible-core.

Both behave the same, which the unit tests prove against the loopback receivers:

* POST, no redirect followed: a 3xx is returned as the answer (open_url's ``safe`` policy for POST);
* every HTTP answer is returned as ``(status, headers, body)``, 4xx and 5xx included; repeated headers are
  joined with ``", "``; the body is read whole (a gzip answer is decoded by both; neither asks for one:
  ``Accept-Encoding: identity``);
* ``timeout`` bounds the connect and each read;
* no answer raises ``NoAnswer`` (an ``OSError``): ``reason`` is the root cause (``socket.timeout``,
  ``ConnectionRefusedError``, ``ssl.SSLCertVerificationError``, ``socket.gaierror`` ...) and its text never
  holds the URL, which carries the webhook's token.

The backend libraries are imported when a transport is built, never at import time: host programs import
this file without ansible-core, and modules without requests.
"""

from __future__ import annotations

import socket
import ssl
import warnings

USER_AGENT = "fleetops.health-im_notify"
BACKENDS = ("open_url", "requests")
# A webhook answer is a few hundred bytes; a proxy's error page is bigger but never this big.
MAX_ANSWER_BYTES = 1024 * 1024


class NoAnswer(OSError):
    """The request got no HTTP answer. ``reason`` is the low-level cause, with no URL in its text."""

    def __init__(self, reason):
        self.reason = reason
        super().__init__(str(reason))

    @property
    def timed_out(self):
        return isinstance(self.reason, socket.timeout)


def _causes(exc):
    """``exc`` and what it wraps, outermost first: ``.reason`` (urllib, urllib3), the first argument
    (requests wraps urllib3's errors there), then ``__cause__``/``__context__``; each seen once."""
    seen, pending = [], [exc]
    while pending and len(seen) < 32:
        current = pending.pop(0)
        if not isinstance(current, BaseException) or any(current is s for s in seen):
            continue
        seen.append(current)
        pending.extend([getattr(current, "reason", None), current.args[0] if current.args else None,
                        current.__cause__, current.__context__])
    return seen


def root_cause(exc):
    """The socket-level error inside a client library's exception, normalized so that both backends name
    the same failure the same way (a timeout is always ``socket.timeout("timed out")``)."""
    causes = _causes(exc)
    for cause in causes:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause
    for cause in causes:
        if isinstance(cause, socket.timeout) or type(cause).__name__ in ("ConnectTimeout", "ReadTimeout",
                                                                         "ConnectTimeoutError", "ReadTimeoutError"):
            return socket.timeout("timed out")
    for cause in reversed(causes):
        # The innermost OSError with an errno or a socket/ssl type is what the kernel or TLS said.
        if isinstance(cause, (socket.gaierror, ssl.SSLError, ConnectionError)) or (
                isinstance(cause, OSError) and cause.errno is not None):
            return cause
    return OSError(type(exc).__name__)


def _joined(items):
    headers = {}
    for key, value in items:
        headers[key] = "%s, %s" % (headers[key], value) if key in headers else value
    return headers


class OpenUrlTransport(object):
    """POST with Ansible's ``Request``. The TLS context is built once: loading the CA store costs tens of
    milliseconds per request otherwise."""

    backend = "open_url"

    def __init__(self, timeout, validate_certs=True):
        from ansible.module_utils.urls import Request, make_context  # pylint: disable=import-outside-toplevel
        self._request = Request(timeout=timeout, validate_certs=validate_certs, http_agent=USER_AGENT,
                                follow_redirects="safe", context=make_context(validate_certs=validate_certs))

    def __call__(self, url, body, headers):
        from urllib.error import HTTPError  # pylint: disable=import-outside-toplevel
        from ansible.module_utils.urls import ConnectionError as UrlsConnectionError  # pylint: disable=import-outside-toplevel
        try:
            response = self._request.open("POST", url, data=body, headers=headers)
            try:
                return response.getcode(), _joined(response.headers.items()), response.read(MAX_ANSWER_BYTES)
            finally:
                response.close()
        except HTTPError as exc:
            try:
                answer = exc.read(MAX_ANSWER_BYTES) or b""
            except (OSError, ValueError, AttributeError):
                answer = b""
            return exc.code, _joined(exc.headers.items()) if exc.headers else {}, answer
        except (OSError, ValueError, UrlsConnectionError) as exc:
            if isinstance(exc, ValueError) and not isinstance(exc, UnicodeError):
                # urllib's text holds the URL (and so the token); requests says the same without it.
                raise ValueError("url: not a valid URL")
            raise NoAnswer(root_cause(exc))

    def close(self):
        """Nothing is pooled: every request opens its own connection."""


class RequestsTransport(object):
    """POST with one ``requests.Session`` for the life of the process, so repeated notices reuse the
    connection. Retries belong to the Sender: the session's adapters retry nothing."""

    backend = "requests"

    def __init__(self, timeout, validate_certs=True):
        import requests  # pylint: disable=import-outside-toplevel
        from requests.adapters import HTTPAdapter  # pylint: disable=import-outside-toplevel
        self._requests = requests
        self.timeout = timeout
        self.validate_certs = validate_certs
        self.session = requests.Session()
        for prefix in ("http://", "https://"):
            self.session.mount(prefix, HTTPAdapter(pool_connections=4, pool_maxsize=4, max_retries=0))
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})

    def __call__(self, url, body, headers):
        requests = self._requests
        try:
            with warnings.catch_warnings():
                # validate_certs: false is the user's explicit choice; open_url does not warn per request either.
                warnings.simplefilter("ignore", requests.packages.urllib3.exceptions.InsecureRequestWarning)
                # Not streamed: requests reads a redirect's body itself before returning it.
                response = self.session.post(url, data=body, headers=headers, timeout=self.timeout,
                                             verify=self.validate_certs, allow_redirects=False)
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema, requests.exceptions.MissingSchema):
            raise ValueError("url: not a valid URL")
        except (requests.exceptions.RequestException, OSError) as exc:
            raise NoAnswer(root_cause(exc))
        try:
            return response.status_code, dict(response.headers.items()), response.content[:MAX_ANSWER_BYTES]
        finally:
            response.close()

    def close(self):
        self.session.close()


_BACKENDS = {"open_url": OpenUrlTransport, "requests": RequestsTransport}


def transport_for(backend, timeout, validate_certs=True):
    """A transport by name; ``backend`` is one of BACKENDS."""
    if backend not in _BACKENDS:
        raise ValueError("transport: must be one of %s, got %r" % (", ".join(BACKENDS), backend))
    return _BACKENDS[backend](timeout, validate_certs)

# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deliver IM notifications: retries with backoff, an on-disk spool, a dedupe window, flushing in order.

Public API: ``notifier_for`` (wires everything from plain options), ``HttpTransport``, ``Sender``, ``Spool``,
``DedupeLedger``, ``Notifier`` and the errors.
The clock and sleep are injectable so that retry timing is testable without waiting.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import ssl
import time
import uuid
from urllib.error import HTTPError

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import Request, make_context
from ansible_collections.fleetops.health.plugins.module_utils.im_adapters import (
    MASK,
    ConfigError,
    Outcome,
    Target,
    adapter_for,
    redact_url,
    scrub,
)
from ansible_collections.fleetops.health.plugins.module_utils.redaction import url_secrets
from ansible_collections.fleetops.health.plugins.module_utils.validation import OptionError, check_number
from ansible_collections.fleetops.health.plugins.module_utils.state_file import (
    StateDirError,
    atomic_write_json,
    ensure_writable_dir,
    load_json_state,
)

SPOOL_FORMAT_VERSION = 1
USER_AGENT = "fleetops.health-im_notify"


class DeliveryError(Exception):
    """Base for failures the caller reports; messages never contain a secret."""


class PermanentDeliveryError(DeliveryError):
    """The platform refused in a way a retry cannot fix (bad signature, token or payload).

    ``result`` holds the task result so far (status, attempts, flushed, hint) for the failure report.
    """

    def __init__(self, outcome, target_label, result, context="the message"):
        self.outcome = outcome
        self.result = dict(result, status=outcome.status, hint=outcome.hint)
        super().__init__("%s refused %s: %s" % (target_label, context, outcome.describe()))


class UndeliveredError(DeliveryError):
    """Retries ran out and the caller asked to fail instead of spooling."""


class HttpTransport(object):
    """POST with Ansible's own client, so no extra library is needed on the managed host.

    The TLS context is built once: loading the CA store costs tens of milliseconds per request otherwise.
    """

    def __init__(self, timeout, validate_certs=True):
        self._request = Request(timeout=timeout, validate_certs=validate_certs, http_agent=USER_AGENT,
                                follow_redirects="safe", context=make_context(validate_certs=validate_certs))

    def __call__(self, url, body, headers):
        """Return ``(status, headers, body)`` for any HTTP answer; raise OSError when there is none."""
        try:
            response = self._request.open("POST", url, data=body, headers=headers)
            return response.getcode(), dict(response.headers.items()), response.read()
        except HTTPError as exc:
            return exc.code, dict(exc.headers.items()) if exc.headers else {}, exc.read() or b""


class AttemptLog(object):
    """What one send did: the final outcome, how many requests and how long it waited between them."""

    def __init__(self):
        self.outcome = None
        self.attempts = 0
        self.waits = []

    @property
    def delivered(self):
        return self.outcome is not None and self.outcome.kind == Outcome.DELIVERED


class Sender(object):
    """Send one payload to one target with retries and exponential backoff.

    Retryable answers (timeouts, refused connections, 5xx, 429, rate-limit codes) are retried up to
    ``retries`` times, waiting ``retry_delay * 2**n`` seconds, or longer when the platform says so in
    Retry-After/retry_after. A wait longer than ``retry_max_delay`` is not taken: the send gives up so
    the message can be spooled. Each attempt is signed afresh, so timestamps never go stale.
    """

    def __init__(self, adapter, target, timeout=10, retries=3, retry_delay=1.0, retry_max_delay=60.0,
                 validate_certs=True, clock=time.time, sleep=time.sleep, post=None):
        self.adapter = adapter
        self.target = target
        self.retries = retries
        self.retry_delay = retry_delay
        self.retry_max_delay = retry_max_delay
        self.clock = clock
        self.sleep = sleep
        self.post = post or HttpTransport(timeout, validate_certs)
        self.sensitive = target.sensitive_strings()

    def attempt(self, payload):
        url, sensitive = self.target.url, self.sensitive
        try:
            url, body, headers = self.adapter.prepare(self.target, payload, self.clock())
            # The signed URL carries this attempt's timestamp and sign: mask them too.
            sensitive = sorted(set(self.sensitive) | url_secrets(url), key=len, reverse=True)
            status, answer_headers, answer = self.post(url, body, headers)
        except (socket.timeout, OSError, ValueError, UrlsConnectionError) as exc:
            # urllib's URLError is an OSError; its text can include the request URL on some paths.
            reason = getattr(exc, "reason", None) or exc
            message = scrub("no answer: %s" % (reason,), sensitive)
            if isinstance(reason, ssl.SSLCertVerificationError):
                return Outcome(Outcome.PERMANENT, None, message,
                               hint="the server's TLS certificate was not trusted; install its CA on this host, "
                                    "or set validate_certs: false for a test endpoint")
            return Outcome(Outcome.RETRYABLE, None, message)
        except Exception as exc:  # pylint: disable=broad-except
            # Whatever else breaks while sending must not lose the message: it is undelivered, so spooled.
            return Outcome(Outcome.RETRYABLE, None, scrub("internal error while sending: %s: %s"
                                                          % (type(exc).__name__, exc), sensitive), final=True)
        try:
            outcome = self.adapter.classify(status, answer_headers, answer)
        except Exception as exc:  # pylint: disable=broad-except
            # An answer we cannot read (a broken proxy, a platform change): keep the message for later.
            outcome = Outcome(Outcome.RETRYABLE, status, "unreadable answer (HTTP %s): %s: %s"
                              % (status, type(exc).__name__, exc), final=True)
        outcome.message = scrub(outcome.message, sensitive)
        return outcome

    def send(self, payload):
        log = AttemptLog()
        while True:
            log.attempts += 1
            log.outcome = self.attempt(payload)
            if log.outcome.kind != Outcome.RETRYABLE or log.outcome.final or log.attempts > self.retries:
                return log
            delay = self.retry_delay * (2 ** (log.attempts - 1))
            retry_after = log.outcome.retry_after
            if retry_after is not None:
                if retry_after > self.retry_max_delay:
                    log.outcome.message += " (asked to wait %ds, more than retry_max_delay)" % retry_after
                    return log
                delay = max(delay, retry_after)
            delay = max(0.0, min(delay, self.retry_max_delay))
            log.waits.append(delay)
            self.sleep(delay)


class Spool(object):
    """Undelivered messages, one JSON file each under ``<dir>/queue``, named so that sorting gives age.

    An entry keeps the platform, the target's fingerprint and redacted label, and the unsigned payload.
    It never keeps the URL or the secret: the task that flushes supplies them again.
    """

    def __init__(self, directory, clock=time.time):
        self.directory = directory
        self.queue_dir = os.path.join(directory, "queue")
        self.clock = clock
        self._sequence = 0

    def ensure_writable(self, option_name="spool_dir", create=True):
        """Fail before sending when the spool could not take a message. ``create=False`` is for check mode."""
        if create:
            ensure_writable_dir(self.directory, option_name, mode=0o700)
            ensure_writable_dir(self.queue_dir, option_name, mode=0o700)
            return
        existing = self.directory
        while not os.path.exists(existing) and os.path.dirname(existing) != existing:
            existing = os.path.dirname(existing)
        if not os.access(existing, os.W_OK | os.X_OK):
            raise StateDirError("%s: %s is not writable by uid %d; choose a writable directory or fix its permissions"
                                % (option_name, existing, os.geteuid()))

    def put(self, target, payload, truncated, reason):
        self._sequence += 1
        name = "%017d-%04d-%s.json" % (int(self.clock() * 1e6), self._sequence % 10000, uuid.uuid4().hex[:8])
        atomic_write_json(os.path.join(self.queue_dir, name), {
            "version": SPOOL_FORMAT_VERSION, "created": self.clock(), "platform": target.platform,
            "target": target.identity, "target_label": target.label, "payload": payload,
            "truncated": bool(truncated), "reason": reason,
        }, mode=0o600)
        return name

    def names(self):
        try:
            return sorted(n for n in os.listdir(self.queue_dir) if n.endswith(".json") and not n.startswith("."))
        except OSError:
            return []

    def pending(self, target):
        """``[(name, entry)]`` for ``target``, oldest first. Unreadable files are reported, not dropped."""
        found = []
        for name in self.names():
            try:
                with open(os.path.join(self.queue_dir, name), "rb") as handle:
                    entry = json.loads(handle.read().decode("utf-8"))
            except (OSError, ValueError) as exc:
                raise DeliveryError("spool_dir: cannot read spooled message %s (%s); move it out of %s"
                                    % (name, exc, self.queue_dir))
            if entry.get("target") == target.identity and entry.get("platform") == target.platform:
                found.append((name, entry))
        return found

    def remove(self, name):
        os.unlink(os.path.join(self.queue_dir, name))


class DedupeLedger(object):
    """When each (target, dedupe_key) was last sent, and how many repeats were suppressed since."""

    def __init__(self, directory, clock=time.time):
        self.path = os.path.join(directory, "dedupe.json")
        self.clock = clock

    def _key(self, target, dedupe_key):
        return "%s/%s" % (target.identity, dedupe_key)

    def check(self, target, dedupe_key, window):
        """Return ``(suppress, suppressed_so_far, state_warning)`` without changing anything."""
        state, warning = load_json_state(self.path)
        record = state.get(self._key(target, dedupe_key))
        if record and self.clock() - record.get("sent", 0) < window:
            return True, record.get("suppressed", 0), warning
        return False, (record or {}).get("suppressed", 0), warning

    def record(self, target, dedupe_key, window, suppressed):
        state, _warning = load_json_state(self.path)
        now = self.clock()
        # Forget keys whose window is long over, so the ledger stays small.
        state = {k: v for k, v in state.items() if now - v.get("sent", 0) < max(window, v.get("window", 0)) * 2}
        key = self._key(target, dedupe_key)
        if suppressed:
            record = state.setdefault(key, {"sent": now, "window": window, "suppressed": 0})
            record["suppressed"] = record.get("suppressed", 0) + 1
        else:
            state[key] = {"sent": now, "window": window, "suppressed": 0}
        atomic_write_json(self.path, state, mode=0o600)


class Notifier(object):
    """The whole task: dedupe, flush the spool in order, send the new message, spool it if undelivered.

    ``on_undelivered`` is ``spool`` (report delivered false, spooled true and a warning) or ``fail``.
    """

    def __init__(self, adapter, target, sender, spool=None, dedupe=None, on_undelivered="spool"):
        self.adapter = adapter
        self.target = target
        self.sender = sender
        self.spool = spool
        self.dedupe = dedupe
        self.on_undelivered = on_undelivered
        self.warnings = []

    def result(self):
        return {"delivered": False, "spooled": False, "suppressed": 0, "attempts": 0, "platform": self.target.platform,
                "status": None, "truncated": False, "flushed": 0, "spool_remaining": 0, "target": self.target.label}

    def preview(self, notification=None, flush=False, dedupe_key=None, dedupe_window=0):
        """Check mode: the request that would be sent, signed, with every secret masked; ``changed`` predicted."""
        result = self.result()
        if self.spool:
            result["spool_remaining"] = len(self.spool.pending(self.target))
        if dedupe_key and self.dedupe:
            suppress, count, _warning = self.dedupe.check(self.target, dedupe_key, dedupe_window)
            result["suppressed"] = count + 1 if suppress else 0
        result["changed"] = bool(flush and result["spool_remaining"]) or bool(notification and not result["suppressed"])
        if notification is None:
            return result
        payload, result["truncated"] = self.adapter.render(notification)
        url, body, headers = self.adapter.prepare(self.target, payload, self.sender.clock())
        request_body = json.loads(scrub(body.decode("utf-8"), self.target.sensitive_strings()))
        for field in ("sign", "timestamp"):
            if field in request_body:
                request_body[field] = MASK
        signature_header = getattr(self.adapter, "signature_header", None)
        result["request"] = {"url": redact_url(self.target.url), "body": request_body,
                             "headers": {k: MASK if k == signature_header else v for k, v in headers.items()}}
        return result

    def run(self, notification=None, flush=False, dedupe_key=None, dedupe_window=0):
        if (flush or dedupe_key) and self.spool is None:
            raise ConfigError("spool_dir: required for flush_spool and dedupe_key")
        result = self.result()
        self._send_or_spool(result, notification, flush, dedupe_key, dedupe_window)
        if self.spool:
            result["spool_remaining"] = len(self.spool.pending(self.target))
        return result

    def _send_or_spool(self, result, notification, flush, dedupe_key, dedupe_window):
        flush_blocked = False
        if flush:
            flush_blocked = self._flush(result)
        if notification is None:
            return
        payload, result["truncated"] = self.adapter.render(notification)
        if dedupe_key:
            suppress, count, warning = self.dedupe.check(self.target, dedupe_key, dedupe_window)
            if warning:
                self.warnings.append(warning)
            if suppress:
                self.dedupe.record(self.target, dedupe_key, dedupe_window, suppressed=True)
                result["suppressed"] = count + 1
                return
            if count:
                payload, result["truncated"] = self.adapter.render(_with_repeat_note(notification, count))
        if flush_blocked:
            # Keep the order: the new message may not overtake what is still spooled.
            self._undelivered(result, payload, "queued behind spooled messages that could not be sent")
        else:
            log = self.sender.send(payload)
            result["attempts"] = log.attempts
            result["status"] = log.outcome.status
            if log.outcome.kind == Outcome.PERMANENT:
                raise PermanentDeliveryError(log.outcome, self.target.label, result)
            if log.delivered:
                result["delivered"] = True
            else:
                self._undelivered(result, payload, "not delivered after %d attempt(s): %s"
                                  % (log.attempts, log.outcome.describe()))
        if dedupe_key:
            self.dedupe.record(self.target, dedupe_key, dedupe_window, suppressed=False)

    def _flush(self, result):
        """Send this target's spooled messages oldest first; return True if some could not be sent."""
        pending = self.spool.pending(self.target)
        for index, (name, entry) in enumerate(pending):
            log = self.sender.send(entry["payload"])
            if log.outcome.kind == Outcome.PERMANENT:
                result["spool_remaining"] = len(pending) - index
                raise PermanentDeliveryError(log.outcome, self.target.label, result,
                                             context="spooled message %s (it stays in %s)" % (name, self.spool.queue_dir))
            if not log.delivered:
                self.warnings.append("flush_spool: stopped after %d of %d spooled message(s): %s"
                                     % (index, len(pending), log.outcome.describe()))
                return True
            self.spool.remove(name)
            result["flushed"] += 1
        return False

    def _undelivered(self, result, payload, reason):
        # The spool file outlives the task: no token, timestamp or sign may reach it.
        reason = scrub(reason, self.sender.sensitive)
        if self.on_undelivered != "spool" or self.spool is None:
            raise UndeliveredError("%s: %s" % (self.target.label, reason))
        self.spool.put(self.target, payload, result["truncated"], reason)
        result["spooled"] = True
        self.warnings.append("%s: message spooled in %s, send it later with flush_spool: true (%s)"
                             % (self.target.label, self.spool.directory, reason))


def _with_repeat_note(notification, count):
    """A copy of ``notification`` that says how many repeats the dedupe window swallowed."""
    noted = copy.copy(notification)
    noted.message = "%s\n(%d repeat(s) of this alert were suppressed by the dedupe window)" % (notification.message, count)
    return noted


# option: (minimum, maximum, integer, minimum excluded); documented in the module's options.
SENDER_LIMITS = {
    "timeout": (0, 600, False, True),
    "retries": (0, 20, True, False),
    "retry_delay": (0, 3600, False, False),
    "retry_max_delay": (0, 86400, False, False),
}


def check_sender_numbers(**values):
    """The sender's numbers checked against SENDER_LIMITS; raises ConfigError naming the option."""
    checked = {}
    for name, value in values.items():
        minimum, maximum, integer, exclusive = SENDER_LIMITS[name]
        try:
            checked[name] = check_number(value, name, minimum, maximum, integer=integer, min_exclusive=exclusive)
        except OptionError as exc:
            raise ConfigError(str(exc))
    return checked


def notifier_for(platform, url, secret=None, chat_id=None, signature_header=None, timeout=10, retries=3,
                 retry_delay=1.0, retry_max_delay=60.0, validate_certs=True, spool_dir=None, on_undelivered="spool",
                 create_spool=True, spool_option="spool_dir"):
    """A Notifier for one target. With ``spool_dir`` the spool is checked (and created unless
    ``create_spool`` is false, as in check mode) before anything is sent; without it nothing is spooled.

    The numbers are checked against the ranges documented in the module (SENDER_LIMITS), so a bad value
    fails before sending instead of being retried as network trouble.
    """
    numbers = check_sender_numbers(timeout=timeout, retries=retries, retry_delay=retry_delay,
                                   retry_max_delay=retry_max_delay)
    timeout, retries, retry_delay, retry_max_delay = (numbers[name] for name in
                                                      ("timeout", "retries", "retry_delay", "retry_max_delay"))
    adapter = adapter_for(platform, signature_header)
    target = Target(platform, url, secret, chat_id)
    sender = Sender(adapter, target, timeout=timeout, retries=retries, retry_delay=retry_delay,
                    retry_max_delay=retry_max_delay, validate_certs=validate_certs)
    spool = dedupe = None
    if spool_dir:
        spool = Spool(spool_dir)
        spool.ensure_writable(spool_option, create=create_spool)
        dedupe = DedupeLedger(spool_dir)
    return Notifier(adapter, target, sender, spool, dedupe, on_undelivered)

# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deliver IM notifications: retries with backoff, an on-disk spool, a dedupe window, flushing in order.

Public API: ``notifier_for`` (wires everything from plain options), ``Sender``, ``Spool``,
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

from ansible_collections.fleetops.health.plugins.module_utils.im_adapters import (
    MASK,
    ConfigError,
    Outcome,
    Target,
    adapter_for,
    redact_url,
    scrub,
)
from ansible_collections.fleetops.health.plugins.module_utils.im_transport import (
    BACKENDS as TRANSPORTS,
    transport_for,
)
from ansible_collections.fleetops.health.plugins.module_utils.redaction import url_secrets
from ansible_collections.fleetops.health.plugins.module_utils.validation import OptionError, check_number
from ansible_collections.fleetops.health.plugins.module_utils.state_file import (
    LOCK_TIMEOUT,
    StateDir,
    StateDirError,
    StateFile,
    StateLockTimeout,
    StateSchema,
    boolean,
    count,
    map_of,
    nullable,
    number,
    record,
    text,
)

SPOOL_FORMAT_VERSION = 1
DEDUPE_VERSION = 1
SPOOL_ENTRY_SCHEMA = StateSchema(
    SPOOL_FORMAT_VERSION,
    record(required={"platform": text, "target": text, "payload": record()},
           optional={"created": number, "target_label": text, "truncated": boolean, "reason": nullable(text)}),
    empty=dict,
)


def _unversioned_ledger(document):
    """Before version 1 the ledger was ``{"<target>/<key>": record}``."""
    return {"keys": document}


DEDUPE_SCHEMA = StateSchema(
    DEDUPE_VERSION,
    record(required={"keys": map_of(record(required={"sent": number},
                                           optional={"window": number, "suppressed": count}))}),
    empty=lambda: {"keys": {}},
    migrate=_unversioned_ledger,
)


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

    ``transport`` names the HTTP backend (im_transport: ``open_url`` in modules, ``requests`` in host
    programs); ``post`` passes a ready transport instead, e.g. one pooled session shared by many senders.
    """

    def __init__(self, adapter, target, timeout=10, retries=3, retry_delay=1.0, retry_max_delay=60.0,
                 validate_certs=True, clock=time.time, sleep=time.sleep, post=None, transport="open_url"):
        self.adapter = adapter
        self.target = target
        self.retries = retries
        self.retry_delay = retry_delay
        self.retry_max_delay = retry_max_delay
        self.clock = clock
        self.sleep = sleep
        self.post = post or transport_for(transport, timeout, validate_certs)
        self.sensitive = target.sensitive_strings()

    def attempt(self, payload):
        url, sensitive = self.target.url, self.sensitive
        try:
            url, body, headers = self.adapter.prepare(self.target, payload, self.clock())
            # The signed URL carries this attempt's timestamp and sign: mask them too.
            sensitive = sorted(set(self.sensitive) | url_secrets(url), key=len, reverse=True)
            status, answer_headers, answer = self.post(url, body, headers)
        except (socket.timeout, OSError, ValueError) as exc:
            # The transports raise NoAnswer (an OSError) whose reason is the root cause; a caller's own
            # transport may raise urllib's URLError, whose text can include the request URL: scrub it.
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
    It never keeps the URL or the secret: the task that flushes supplies them again. Entries are written
    atomically and need no lock (each has its own name); a flush holds ``<dir>/queue.lock`` so that two runs
    never send one entry twice. An entry that cannot be read or has the wrong shape is moved aside
    (``<name>.corrupt-<epoch>``) with a warning and never blocks the others.
    """

    def __init__(self, directory, clock=time.time, check_mode=False, option_name="spool_dir", lock_timeout=LOCK_TIMEOUT):
        self.directory = directory
        self.queue_dir = os.path.join(directory, "queue")
        self.clock = clock
        self.lock_timeout = lock_timeout
        self.warnings = []
        self._sequence = 0
        self._configure(option_name, check_mode)

    def _configure(self, option_name, check_mode):
        self.folder = StateDir(self.directory, option_name, check_mode)
        self.queue = StateDir(self.queue_dir, option_name, check_mode)

    def ensure_writable(self, option_name="spool_dir", create=True):
        """Fail before sending when the spool could not take a message. ``create=False`` is for check mode:
        nothing is created, but a spool the real run could not create or use fails the same way."""
        if self.folder.option_name != option_name or self.folder.check_mode == create:
            self.folder.close()
            self.queue.close()
            self._configure(option_name, check_mode=not create)
        self.folder.open()
        self.queue.open()

    def put(self, target, payload, truncated, reason):
        self.folder.open()
        self.queue.open()
        self._sequence += 1
        name = "%017d-%04d-%s.json" % (int(self.clock() * 1e6), self._sequence % 10000, uuid.uuid4().hex[:8])
        self.queue.write_json(name, SPOOL_ENTRY_SCHEMA.dump({
            "created": self.clock(), "platform": target.platform,
            "target": target.identity, "target_label": target.label, "payload": payload,
            "truncated": bool(truncated), "reason": reason,
        }))
        return name

    def names(self):
        try:
            self.queue.open()
            return sorted(n for n in self.queue.names() if n.endswith(".json") and not n.startswith("."))
        except (OSError, StateDirError):
            return []

    def pending(self, target):
        """``[(name, entry)]`` for ``target``, oldest first. A bad entry is set aside with a warning."""
        found = []
        for name in self.names():
            entry = self._read(name)
            if entry is not None and entry["target"] == target.identity and entry["platform"] == target.platform:
                found.append((name, entry))
        return found

    def _read(self, name):
        try:
            raw = self.queue.read_bytes(name)
            if raw is None:  # sent and removed by a concurrent flush
                return None
            return SPOOL_ENTRY_SCHEMA.load(json.loads(raw.decode("utf-8")), "")
        except (ValueError, StateDirError) as exc:
            why = str(exc).lstrip(".")
        if self.queue.check_mode:
            self.warnings.append("spool_dir: spooled message %s is unusable (%s); check mode leaves it, a real run "
                                 "moves it aside" % (self.queue.join(name), why))
        else:
            try:
                aside = self.queue.move_aside(name)
            except OSError as exc:
                aside = "nowhere (%s)" % exc.strerror
            self.warnings.append("spool_dir: spooled message %s is unusable (%s); moved it to %s; the other messages "
                                 "are sent" % (self.queue.join(name), why, aside))
        return None

    def remove(self, name):
        self.queue.remove(name)

    def flush_lock(self):
        """The fd of ``queue.lock`` once held (close it to release); StateLockTimeout after ``lock_timeout``."""
        self.folder.open()
        return self.folder.lock("queue.lock", self.lock_timeout)


class DedupeLedger(object):
    """When each (target, dedupe_key) was last sent, and how many repeats were suppressed since.

    ``claim`` decides and records in one locked step, so runs at the same moment keep every key and send one
    message per key and window; ``release`` gives a claim back when its message was not delivered or spooled.
    """

    def __init__(self, directory, clock=time.time, check_mode=False, option_name="spool_dir", lock_timeout=LOCK_TIMEOUT):
        self.directory = directory
        self.path = os.path.join(directory, "dedupe.json")
        self.clock = clock
        self.check_mode = check_mode
        self.option_name = option_name
        self.lock_timeout = lock_timeout
        self.warnings = []

    def _ledger(self, check_mode=None):
        folder = StateDir(self.directory, self.option_name, self.check_mode if check_mode is None else check_mode)
        return StateFile(folder, "dedupe.json", DEDUPE_SCHEMA, lock_timeout=self.lock_timeout)

    def _key(self, target, dedupe_key):
        return "%s/%s" % (target.identity, dedupe_key)

    def check(self, target, dedupe_key, window):
        """Return ``(suppress, suppressed_so_far)`` without changing anything."""
        with self._ledger(check_mode=True) as ledger:
            self.warnings.extend(ledger.warnings)
            entry = ledger.data["keys"].get(self._key(target, dedupe_key))
        if entry and self.clock() - entry["sent"] < window:
            return True, entry.get("suppressed", 0)
        return False, (entry or {}).get("suppressed", 0)

    def claim(self, target, dedupe_key, window):
        """Return ``(suppress, count, previous)``: a repeat inside the window is counted and suppressed (count is
        the repeats so far, this one included); otherwise the key is marked sent now, count is the repeats the
        last window swallowed and ``previous`` is what ``release`` puts back."""
        key = self._key(target, dedupe_key)
        with self._ledger() as ledger:
            self.warnings.extend(ledger.warnings)
            now = self.clock()
            # Forget keys whose window is long over, so the ledger stays small.
            keys = ledger.data["keys"] = dict(
                (k, v) for k, v in ledger.data["keys"].items() if now - v["sent"] < max(window, v.get("window", 0)) * 2)
            previous = keys.get(key)
            if previous and now - previous["sent"] < window:
                keys[key] = dict(previous, suppressed=previous.get("suppressed", 0) + 1)
                ledger.save()
                return True, keys[key]["suppressed"], previous
            keys[key] = {"sent": now, "window": window, "suppressed": 0}
            ledger.save()
            return False, (previous or {}).get("suppressed", 0), previous

    def release(self, target, dedupe_key, previous):
        key = self._key(target, dedupe_key)
        with self._ledger() as ledger:
            keys = ledger.data["keys"]
            if previous is None:
                keys.pop(key, None)
            else:
                keys[key] = previous
            ledger.save()


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
            suppress, count = self.dedupe.check(self.target, dedupe_key, dedupe_window)
            result["suppressed"] = count + 1 if suppress else 0
        self._collect_store_warnings()
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
        try:
            self._send_or_spool(result, notification, flush, dedupe_key, dedupe_window)
            if self.spool:
                try:
                    result["spool_remaining"] = len(self.spool.pending(self.target))
                except (OSError, StateDirError) as exc:
                    # What was delivered stays delivered: a spool that went bad afterwards is a warning.
                    self.warnings.append("spool_dir: cannot count the messages left in %s (%s)"
                                         % (self.spool.queue_dir, exc))
        finally:
            self._collect_store_warnings()
        return result

    def _collect_store_warnings(self):
        for store in (self.spool, self.dedupe):
            if store is not None:
                self.warnings.extend(store.warnings)
                del store.warnings[:]

    def _send_or_spool(self, result, notification, flush, dedupe_key, dedupe_window):
        flush_blocked = False
        if flush:
            flush_blocked = self._flush(result)
        if notification is None:
            return
        payload, result["truncated"] = self.adapter.render(notification)
        claimed = False
        if dedupe_key:
            suppress, count, previous = self.dedupe.claim(self.target, dedupe_key, dedupe_window)
            if suppress:
                result["suppressed"] = count
                return
            claimed = True
            if count:
                payload, result["truncated"] = self.adapter.render(_with_repeat_note(notification, count))
        try:
            self._deliver(result, payload, flush_blocked)
        except BaseException:
            if claimed:
                # Neither sent nor spooled: a retry of the task must not be suppressed as a repeat.
                self.dedupe.release(self.target, dedupe_key, previous)
            raise

    def _deliver(self, result, payload, flush_blocked):
        if flush_blocked:
            # Keep the order: the new message may not overtake what is still spooled.
            self._undelivered(result, payload, "queued behind spooled messages that could not be sent")
            return
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

    def _flush(self, result):
        """Send this target's spooled messages oldest first, holding the spool's flush lock so that no other
        run sends them too; return True if some could not be sent (the new message then queues behind)."""
        try:
            lock_fd = self.spool.flush_lock()
        except StateLockTimeout as exc:
            self.warnings.append("flush_spool: %s; the spool was not flushed in this run" % exc)
            return True
        try:
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
        finally:
            os.close(lock_fd)

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
                 create_spool=True, spool_option="spool_dir", transport="open_url", post=None):
    """A Notifier for one target. With ``spool_dir`` the spool is checked (and created unless
    ``create_spool`` is false, as in check mode) before anything is sent; without it nothing is spooled.

    The numbers are checked against the ranges documented in the module (SENDER_LIMITS), so a bad value
    fails before sending instead of being retried as network trouble. ``transport`` and ``post`` are the
    Sender's: host programs pass ``transport="requests"`` (or one shared ``post``), modules keep open_url.
    """
    if transport not in TRANSPORTS:
        raise ConfigError("transport: must be one of %s, got %r" % (", ".join(TRANSPORTS), transport))
    numbers = check_sender_numbers(timeout=timeout, retries=retries, retry_delay=retry_delay,
                                   retry_max_delay=retry_max_delay)
    timeout, retries, retry_delay, retry_max_delay = (numbers[name] for name in
                                                      ("timeout", "retries", "retry_delay", "retry_max_delay"))
    adapter = adapter_for(platform, signature_header)
    target = Target(platform, url, secret, chat_id)
    sender = Sender(adapter, target, timeout=timeout, retries=retries, retry_delay=retry_delay,
                    retry_max_delay=retry_max_delay, validate_certs=validate_certs, post=post, transport=transport)
    spool = dedupe = None
    if spool_dir:
        spool = Spool(spool_dir, check_mode=not create_spool, option_name=spool_option)
        spool.ensure_writable(spool_option, create=create_spool)
        dedupe = DedupeLedger(spool_dir, check_mode=not create_spool, option_name=spool_option)
    return Notifier(adapter, target, sender, spool, dedupe, on_undelivered)

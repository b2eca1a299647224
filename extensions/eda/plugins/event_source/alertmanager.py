# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An authenticated Alertmanager webhook receiver for Event-Driven Ansible (one event per alert)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
short_description: Receive Alertmanager webhooks, authenticated and de-duplicated, one event per alert
description:
  - An ansible-rulebook event source plugin. It runs an aiohttp server that takes Alertmanager's
    webhook (payload version 4) by POST on C(/) and on O(path), and puts one event per alert on the queue.
  - Every request must carry the bearer token O(token) (Alertmanager's C(http_config.authorization)) or an
    HMAC of the body signed with O(hmac_secret) in the header O(hmac_header). A request without credentials
    gets 401, wrong credentials 403, a body over O(max_body_bytes) 413, malformed JSON or a payload that is
    not version 4 gets 400. None of them reaches the queue. The token and the secret are never logged.
  - An alert already put on the queue with the same C(fingerprint), C(startsAt) and C(status) within
    O(dedupe_window) seconds is dropped, so Alertmanager's re-sends and both members of an HA pair of
    Alertmanagers start one repair, not two.
  - The label O(host_label) (C(instance), C(host:port)) becomes the inventory host name through
    O(host_pattern) (strips the port) and then O(host_map) (aliases), and is put in C(meta.hosts), which
    ansible-rulebook uses as the limit of C(run_playbook).
  - "Each event: C(alert) (the alert as sent), C(labels) (its labels), C(host) (the inventory name; absent
    when the alert has no O(host_label)), C(group) (the payload's C(version), C(groupKey), C(status), C(receiver), C(groupLabels),
    C(commonLabels), C(commonAnnotations), C(externalURL) and C(truncatedAlerts)), C(meta.hosts) (the
    host, absent with C(host))."
options:
  host:
    description: The address to listen on. Keep C(127.0.0.1) unless Alertmanager runs on another machine.
    type: str
    default: 127.0.0.1
  port:
    description: The TCP port to listen on.
    type: int
    default: 5000
  path:
    description: The path Alertmanager posts to, besides C(/) (Alertmanager posts to its C(url) as written).
    type: str
    default: /alerts
  token:
    description:
      - The bearer token Alertmanager sends (C(Authorization: Bearer <token>)).
      - Defaults to the environment variable C(FLEETOPS_EDA_TOKEN).
    type: str
  hmac_secret:
    description:
      - The secret of an HMAC over the raw body, sent as C(<hmac_algorithm>=<hex digest>) in O(hmac_header).
      - Defaults to the environment variable C(FLEETOPS_EDA_HMAC_SECRET). At least one of O(token) and
        O(hmac_secret) must be set; a request passes when either one checks out.
    type: str
  hmac_header:
    description: The header that carries the HMAC signature.
    type: str
    default: X-Fleetops-Signature
  hmac_algorithm:
    description: The hash of the HMAC.
    type: str
    choices: [sha256, sha512]
    default: sha256
  max_body_bytes:
    description: The largest body accepted, in bytes; a larger one gets 413 before it is read.
    type: int
    default: 1048576
  dedupe_window:
    description:
      - Seconds an alert's C(fingerprint) + C(startsAt) + C(status) is remembered; a repeat within the window
        is dropped. Longer than Alertmanager's C(group_interval) (re-sends of a group whose alerts changed)
        and than the spread of an HA pair's sends; shorter than C(repeat_interval), so that an alert still
        firing at its repeat starts one more repair (the host's restart budget decides whether it restarts).
    type: int
    default: 300
  dedupe_max_entries:
    description: How many alerts the dedupe memory keeps at most; the oldest go first.
    type: int
    default: 10000
  host_label:
    description: The alert label that names the host.
    type: str
    default: instance
  host_pattern:
    description:
      - A regular expression applied to O(host_label)'s value; its first group is the host name. The default
        strips a C(:port) and the brackets of an IPv6 address.
    type: str
    default: '^\[?([^\]]*?)\]?(?::\d+)?$'
  host_map:
    description: Aliases applied after O(host_pattern), e.g. C({10.0.0.5: web-1}); unmapped names pass as they are.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Remediate what Alertmanager reports
  hosts: all
  sources:
    - fleetops.health.alertmanager:
        host: 0.0.0.0
        port: 5000
        path: /alerts
        token: "{{ FLEETOPS_EDA_TOKEN }}"
        host_map:
          10.0.0.5: web-1
  rules:
    - name: Restart the failed service
      condition: event.alert.status == "firing" and event.labels.alertname == "FleetopsServiceFailed"
      action:
        run_playbook:
          name: fleetops.health.remediate
"""

import asyncio
import collections
import hashlib
import hmac
import json
import logging
import os
import re
import time
from typing import Any, Dict, List, Optional

from aiohttp import web

LOGGER = logging.getLogger(__name__)

PAYLOAD_VERSION = "4"
GROUP_FIELDS = (
    "version", "groupKey", "status", "receiver", "groupLabels", "commonLabels", "commonAnnotations",
    "externalURL", "truncatedAlerts",
)
DEFAULTS = {
    "host": "127.0.0.1",
    "port": 5000,
    "path": "/alerts",
    "hmac_header": "X-Fleetops-Signature",
    "hmac_algorithm": "sha256",
    "max_body_bytes": 1048576,
    "dedupe_window": 300,
    "dedupe_max_entries": 10000,
    "host_label": "instance",
    "host_pattern": r"^\[?([^\]]*?)\]?(?::\d+)?$",
}


class PayloadError(ValueError):
    """The body is not an Alertmanager version 4 payload; the message says what is wrong."""


class Settings:
    """The source's arguments, checked once at start so that a mistake stops the rulebook with a clear error."""

    def __init__(self, args: Dict[str, Any]) -> None:
        merged = dict(DEFAULTS)
        merged.update({key: value for key, value in args.items() if value is not None})
        self.host = str(merged["host"])
        self.port = _integer(merged, "port", 0, 65535)
        self.path = str(merged["path"])
        if not self.path.startswith("/"):
            raise ValueError("alertmanager: path must start with '/', e.g. /alerts (got %r)" % self.path)
        self.token = merged.get("token") or os.environ.get("FLEETOPS_EDA_TOKEN") or None
        self.hmac_secret = merged.get("hmac_secret") or os.environ.get("FLEETOPS_EDA_HMAC_SECRET") or None
        if not self.token and not self.hmac_secret:
            raise ValueError(
                "alertmanager: set token (a bearer token Alertmanager sends through http_config) or hmac_secret, "
                "or export FLEETOPS_EDA_TOKEN; the source refuses to run without authentication")
        self.hmac_header = str(merged["hmac_header"])
        self.hmac_algorithm = str(merged["hmac_algorithm"])
        if self.hmac_algorithm not in ("sha256", "sha512"):
            raise ValueError("alertmanager: hmac_algorithm must be sha256 or sha512 (got %r)" % self.hmac_algorithm)
        self.max_body_bytes = _integer(merged, "max_body_bytes", 1, None)
        self.dedupe_window = _integer(merged, "dedupe_window", 0, None)
        self.dedupe_max_entries = _integer(merged, "dedupe_max_entries", 1, None)
        self.host_label = str(merged["host_label"])
        try:
            self.host_pattern = re.compile(str(merged["host_pattern"]))
        except re.error as exc:
            raise ValueError("alertmanager: host_pattern is not a valid regular expression: %s" % exc)
        if self.host_pattern.groups < 1:
            raise ValueError("alertmanager: host_pattern needs one group, the host name, e.g. ^([^:]+)")
        host_map = merged.get("host_map") or {}
        if not isinstance(host_map, dict):
            raise ValueError("alertmanager: host_map must be a mapping of names to inventory host names")
        self.host_map = {str(key): str(value) for key, value in host_map.items()}


def _integer(merged: Dict[str, Any], name: str, lowest: int, highest: Optional[int]) -> int:
    try:
        value = int(merged[name])
    except (TypeError, ValueError):
        raise ValueError("alertmanager: %s must be an integer (got %r)" % (name, merged[name]))
    if value < lowest or (highest is not None and value > highest):
        raise ValueError("alertmanager: %s must be between %s and %s (got %d)" % (name, lowest, highest or "any", value))
    return value


def host_of(labels: Dict[str, Any], settings: Settings) -> Optional[str]:
    """The inventory host an alert is about: host_label's value, port stripped by host_pattern, then host_map."""
    raw = labels.get(settings.host_label)
    if not isinstance(raw, str) or not raw:
        return None
    match = settings.host_pattern.match(raw)
    name = match.group(1) if match and match.group(1) else raw
    return settings.host_map.get(name, name)


def parse_payload(body: bytes) -> Dict[str, Any]:
    """The payload as a dict, or PayloadError saying what is wrong with it."""
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise PayloadError("the body is not JSON: %s" % exc)
    if not isinstance(payload, dict):
        raise PayloadError("the body must be a JSON object, an Alertmanager webhook payload")
    if str(payload.get("version")) != PAYLOAD_VERSION:
        raise PayloadError("payload version %r is not supported; Alertmanager's webhook sends version 4"
                           % payload.get("version"))
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError("the payload has no list 'alerts'")
    for index, alert in enumerate(alerts):
        if not isinstance(alert, dict) or not isinstance(alert.get("labels", {}), dict):
            raise PayloadError("alerts[%d] must be an object whose labels are an object" % index)
        if alert.get("status") not in ("firing", "resolved"):
            raise PayloadError("alerts[%d].status must be firing or resolved" % index)
    truncated = payload.get("truncatedAlerts", 0)
    if not isinstance(truncated, int) or truncated < 0:
        raise PayloadError("truncatedAlerts must be a count, 0 or more")
    return payload


class RecentAlerts:
    """Alerts put on the queue lately, keyed by fingerprint + startsAt + status, bounded in time and size."""

    def __init__(self, window: float, max_entries: int) -> None:
        self.window = window
        self.max_entries = max_entries
        self._seen = collections.OrderedDict()  # (fingerprint, startsAt, status) -> when first seen

    def first_time(self, alert: Dict[str, Any], now: float) -> bool:
        """True (and remembered) when the alert was not seen within the window; False for a repeat."""
        while self._seen:
            oldest_key, oldest_at = next(iter(self._seen.items()))
            if now - oldest_at < self.window and len(self._seen) < self.max_entries:
                break
            del self._seen[oldest_key]
        key = (str(alert.get("fingerprint") or _fingerprint_of(alert)), str(alert.get("startsAt", "")),
               str(alert.get("status", "")))
        if key in self._seen:
            return False
        self._seen[key] = now
        return True


def _fingerprint_of(alert: Dict[str, Any]) -> str:
    """A stand-in for a missing fingerprint: the labels, canonically serialized."""
    return hashlib.sha256(json.dumps(alert.get("labels", {}), sort_keys=True).encode()).hexdigest()[:16]


def events_of(payload: Dict[str, Any], settings: Settings, endpoint: str) -> List[Dict[str, Any]]:
    """One event per alert, each carrying the payload's group fields."""
    group = {field: payload.get(field) for field in GROUP_FIELDS}
    group["truncatedAlerts"] = payload.get("truncatedAlerts", 0)
    events = []
    for alert in payload["alerts"]:
        labels = alert.get("labels", {})
        host = host_of(labels, settings)
        event = {"alert": alert, "labels": labels, "group": group, "meta": {"endpoint": endpoint}}
        if host:
            # Absent, not null, when unknown: rules test `event.host is defined`, and without meta.hosts
            # run_playbook would run on every host of the inventory.
            event["host"] = host
            event["meta"]["hosts"] = [host]
        events.append(event)
    return events


class Receiver:
    """The HTTP side: authenticate, bound, parse, de-duplicate, then queue."""

    def __init__(self, queue: Any, settings: Settings) -> None:
        self.queue = queue
        self.settings = settings
        self.recent = RecentAlerts(settings.dedupe_window, settings.dedupe_max_entries)
        self._token = ("Bearer " + settings.token).encode() if settings.token else None
        self._hmac_key = settings.hmac_secret.encode() if settings.hmac_secret else None

    def application(self) -> web.Application:
        # client_max_size makes aiohttp itself refuse a bigger body while reading it (chunked bodies too).
        app = web.Application(client_max_size=self.settings.max_body_bytes)
        app.router.add_post("/", self.handle)
        if self.settings.path != "/":
            app.router.add_post(self.settings.path, self.handle)
        return app

    def _bearer_verdict(self, request: web.Request) -> Optional[int]:
        """None when the bearer token checks out, 401 when none is sent, 403 when it is wrong."""
        sent = request.headers.get("Authorization")
        if sent is None:
            return 401
        if self._token is not None and hmac.compare_digest(sent.encode(), self._token):
            return None
        return 403

    def _signature_verdict(self, request: web.Request, body: bytes) -> Optional[int]:
        sent = request.headers.get(self.settings.hmac_header)
        if sent is None:
            return 401
        expected = "%s=%s" % (self.settings.hmac_algorithm,
                              hmac.new(self._hmac_key, body, self.settings.hmac_algorithm).hexdigest())
        return None if hmac.compare_digest(sent.encode(), expected.encode()) else 403

    async def handle(self, request: web.Request) -> web.Response:
        peer = request.remote
        signed = self._hmac_key is not None and self.settings.hmac_header in request.headers
        if not signed:
            # Without a signature only the token can pass: refuse before reading a byte of the body.
            verdict = 401 if self._token is None else self._bearer_verdict(request)
            if verdict is not None:
                return _refuse(verdict, peer, "no valid bearer token or signature")
        if request.content_length is not None and request.content_length > self.settings.max_body_bytes:
            return _refuse(413, peer, "body of %d bytes is over max_body_bytes %d"
                           % (request.content_length, self.settings.max_body_bytes))
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _refuse(413, peer, "body is over max_body_bytes %d" % self.settings.max_body_bytes)
        if signed:
            verdict = self._signature_verdict(request, body)
            if verdict is not None:
                return _refuse(verdict, peer, "bad %s signature" % self.settings.hmac_header)
        try:
            payload = parse_payload(body)
        except PayloadError as exc:
            return _refuse(400, peer, str(exc))
        if payload.get("truncatedAlerts"):
            LOGGER.warning("alertmanager: %s alerts of group %s were truncated by Alertmanager's max_alerts; "
                           "they are not in this payload", payload["truncatedAlerts"], payload.get("groupKey"))
        now = time.monotonic()
        accepted = duplicates = 0
        for event in events_of(payload, self.settings, request.path):
            if self.recent.first_time(event["alert"], now):
                await self.queue.put(event)
                accepted += 1
                LOGGER.info("alertmanager: queued %s %s for host %s", event["alert"].get("status"),
                            event["labels"].get("alertname"), event.get("host"))
            else:
                duplicates += 1
        return web.json_response({"accepted": accepted, "duplicates": duplicates})


def _refuse(status: int, peer: Optional[str], why: str) -> web.Response:
    # Only the peer and the reason are logged: never a header, the token or the secret.
    LOGGER.warning("alertmanager: refused a request from %s with %d: %s", peer, status, why)
    return web.json_response({"error": why}, status=status)


async def main(queue: Any, args: Dict[str, Any]) -> None:
    """ansible-rulebook's entry point: serve until cancelled."""
    settings = Settings(args)
    receiver = Receiver(queue, settings)
    runner = web.AppRunner(receiver.application(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    LOGGER.info("alertmanager: listening on %s:%d (POST / and %s)", settings.host, settings.port, settings.path)
    try:
        await asyncio.Future()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    # A test hook, as Event-Driven Ansible's sources have: serve on 127.0.0.1:5000 and print each event.
    import sys

    class _PrintQueue:
        async def put(self, event: Dict[str, Any]) -> None:
            sys.stdout.write(json.dumps(event) + "\n")
            sys.stdout.flush()

    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(_PrintQueue(), {"token": os.environ.get("FLEETOPS_EDA_TOKEN", "test-token")}))

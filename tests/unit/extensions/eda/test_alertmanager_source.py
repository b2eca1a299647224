# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Alertmanager event source, served for real on loopback and spoken to with an aiohttp client."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
import logging
import socket

import aiohttp
import pytest

from ansible_collections.fleetops.health.extensions.eda.plugins.event_source import alertmanager

TOKEN = "s3cret-token-0123"
HMAC_SECRET = "hmac-secret-4567"

PAYLOAD = {
    "version": "4",
    "groupKey": "{}:{alertname=\"FleetopsProbeDown\"}",
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "fleet-remediation",
    "groupLabels": {"alertname": "FleetopsProbeDown"},
    "commonLabels": {"alertname": "FleetopsProbeDown", "severity": "critical"},
    "commonAnnotations": {"summary": "nginx down"},
    "externalURL": "http://alertmanager:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "FleetopsProbeDown", "instance": "10.0.0.5:9100", "service": "nginx.service"},
            "annotations": {"summary": "nginx down on web-1"},
            "startsAt": "2026-11-25T10:00:00.000Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": "c7d4a1b2e3f40516",
        },
        {
            "status": "firing",
            "labels": {"alertname": "FleetopsProbeDown", "instance": "[fd00::7]:9100", "service": "api.service"},
            "annotations": {},
            "startsAt": "2026-11-25T10:00:05.000Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": "aa11bb22cc33dd44",
        },
    ],
}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_against_source(args, client_steps):
    """Start the source's main() on loopback, run client_steps(session, base_url), return (queued events, result)."""
    queue = asyncio.Queue()
    port = free_port()
    source_args = dict({"port": port, "host": "127.0.0.1"}, **args)

    async def scenario():
        task = asyncio.ensure_future(alertmanager.main(queue, source_args))
        base = "http://127.0.0.1:%d" % port
        async with aiohttp.ClientSession() as session:
            for _attempt in range(200):
                try:
                    async with session.post(base + "/nowhere"):
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.02)
            try:
                result = await client_steps(session, base)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        events = []
        while not queue.empty():
            events.append(queue.get_nowait())
        return events, result

    return asyncio.run(scenario())


def sign(body, secret=HMAC_SECRET):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def bearer(token=TOKEN):
    return {"Authorization": "Bearer " + token, "Content-Type": "application/json"}


def body_of(payload=None):
    return json.dumps(payload or PAYLOAD).encode()


async def post(session, url, data, headers):
    async with session.post(url, data=data, headers=headers) as response:
        return response.status, await response.text()


def test_a_good_payload_gives_one_event_per_alert_with_host_labels_and_group():
    async def steps(session, base):
        return await post(session, base + "/alerts", body_of(), bearer())

    events, (status, text) = run_against_source({"token": TOKEN, "host_map": {"10.0.0.5": "web-1"}}, steps)
    assert status == 200 and json.loads(text) == {"accepted": 2, "duplicates": 0}
    assert [event["host"] for event in events] == ["web-1", "fd00::7"]
    assert [event["meta"]["hosts"] for event in events] == [["web-1"], ["fd00::7"]]
    first = events[0]
    assert first["alert"]["fingerprint"] == "c7d4a1b2e3f40516"
    assert first["labels"]["service"] == "nginx.service"
    assert first["group"]["groupKey"] == PAYLOAD["groupKey"]
    assert first["group"]["receiver"] == "fleet-remediation"
    assert first["group"]["truncatedAlerts"] == 0
    assert first["group"]["commonLabels"] == PAYLOAD["commonLabels"]
    assert first["meta"]["endpoint"] == "/alerts"


def test_posts_on_root_and_on_the_configured_path_only():
    async def steps(session, base):
        return [
            (await post(session, base + "/", body_of(), bearer()))[0],
            (await post(session, base + "/hook/am", body_of(), bearer()))[0],
            (await post(session, base + "/alerts", body_of(), bearer()))[0],
        ]

    events, statuses = run_against_source({"token": TOKEN, "path": "/hook/am"}, steps)
    # The second POST repeats the first alerts, so it is de-duplicated; /alerts is not configured here.
    assert statuses == [200, 200, 404]
    assert len(events) == 2


@pytest.mark.parametrize("headers, expected", [
    ({"Content-Type": "application/json"}, 401),
    ({"Authorization": "Bearer wrong-token"}, 403),
    ({"Authorization": "Basic " + TOKEN}, 403),
    ({"Authorization": "Bearer " + TOKEN + "x"}, 403),
])
def test_unauthenticated_or_wrong_token_is_refused_and_queues_nothing(headers, expected):
    async def steps(session, base):
        return await post(session, base + "/alerts", body_of(), headers)

    events, (status, _text) = run_against_source({"token": TOKEN}, steps)
    assert status == expected
    assert events == []


def test_hmac_signature_passes_and_a_bad_one_is_refused():
    body = body_of()

    async def steps(session, base):
        bad = await post(session, base + "/alerts", body, {"X-Fleetops-Signature": sign(body, "other-secret")})
        tampered = await post(session, base + "/alerts", body.replace(b"nginx", b"nginy"),
                              {"X-Fleetops-Signature": sign(body)})
        unsigned = await post(session, base + "/alerts", body, {})
        good = await post(session, base + "/alerts", body, {"X-Fleetops-Signature": sign(body)})
        return bad[0], tampered[0], unsigned[0], good[0]

    events, statuses = run_against_source({"hmac_secret": HMAC_SECRET}, steps)
    assert statuses == (403, 403, 401, 200)
    assert len(events) == 2


def test_a_10_mb_body_gets_413_whether_its_length_is_announced_or_chunked():
    big = b"{" + b" " * (10 * 1024 * 1024) + b"}"

    async def chunks():
        for offset in range(0, len(big), 65536):
            yield big[offset:offset + 65536]

    async def steps(session, base):
        announced = await post(session, base + "/alerts", big, bearer())
        chunked = await post(session, base + "/alerts", chunks(), bearer())
        signed = await post(session, base + "/alerts", big, {"X-Fleetops-Signature": sign(big)})
        return announced[0], chunked[0], signed[0]

    events, statuses = run_against_source({"token": TOKEN, "hmac_secret": HMAC_SECRET}, steps)
    assert statuses == (413, 413, 413)
    assert events == []


@pytest.mark.parametrize("body, why", [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "JSON object"),
    (json.dumps(dict(PAYLOAD, version="3")).encode(), "version"),
    (json.dumps(dict(PAYLOAD, alerts="x")).encode(), "alerts"),
    (json.dumps(dict(PAYLOAD, alerts=[{"status": "odd", "labels": {}}])).encode(), "status"),
    (json.dumps(dict(PAYLOAD, truncatedAlerts=-1)).encode(), "truncatedAlerts"),
])
def test_malformed_payloads_get_400_naming_the_problem(body, why):
    async def steps(session, base):
        return await post(session, base + "/alerts", body, bearer())

    events, (status, text) = run_against_source({"token": TOKEN}, steps)
    assert status == 400
    assert why in json.loads(text)["error"]
    assert events == []


def test_a_replayed_payload_and_an_ha_twin_queue_nothing_new_but_a_resolve_does():
    resolved = copy.deepcopy(PAYLOAD)
    resolved["status"] = "resolved"
    for alert in resolved["alerts"]:
        alert["status"] = "resolved"
    # The HA twin sends the same alerts under its own externalURL.
    twin = dict(PAYLOAD, externalURL="http://alertmanager-2:9093")

    async def steps(session, base):
        answers = []
        for body in (body_of(), body_of(), body_of(twin), body_of(resolved), body_of(resolved)):
            answers.append(json.loads((await post(session, base + "/alerts", body, bearer()))[1]))
        return answers

    events, answers = run_against_source({"token": TOKEN}, steps)
    assert [answer["accepted"] for answer in answers] == [2, 0, 0, 2, 0]
    assert [event["alert"]["status"] for event in events] == ["firing", "firing", "resolved", "resolved"]


def test_a_new_firing_of_the_same_alert_passes_and_the_window_forgets():
    refiring = copy.deepcopy(PAYLOAD)
    refiring["alerts"][0]["startsAt"] = "2026-11-25T11:00:00.000Z"

    async def steps(session, base):
        first = json.loads((await post(session, base + "/alerts", body_of(), bearer()))[1])
        again = json.loads((await post(session, base + "/alerts", body_of(refiring), bearer()))[1])
        await asyncio.sleep(1.2)
        after_window = json.loads((await post(session, base + "/alerts", body_of(), bearer()))[1])
        return first["accepted"], again["accepted"], after_window["accepted"]

    _events, counts = run_against_source({"token": TOKEN, "dedupe_window": 1}, steps)
    assert counts == (2, 1, 2)


def test_truncated_alerts_are_carried_and_logged(caplog):
    truncated = dict(PAYLOAD, truncatedAlerts=7)

    async def steps(session, base):
        return await post(session, base + "/alerts", body_of(truncated), bearer())

    with caplog.at_level(logging.WARNING):
        events, (status, _text) = run_against_source({"token": TOKEN}, steps)
    assert status == 200
    assert events[0]["group"]["truncatedAlerts"] == 7
    assert "7 alerts" in caplog.text


def test_secrets_never_reach_the_log(caplog):
    async def steps(session, base):
        await post(session, base + "/alerts", body_of(), bearer("Bearer-" + TOKEN))
        await post(session, base + "/alerts", body_of(), {"X-Fleetops-Signature": sign(body_of(), TOKEN)})
        await post(session, base + "/alerts", b"{", bearer())
        return None

    with caplog.at_level(logging.DEBUG):
        run_against_source({"token": TOKEN, "hmac_secret": HMAC_SECRET}, steps)
    assert "refused" in caplog.text
    assert TOKEN not in caplog.text and HMAC_SECRET not in caplog.text


@pytest.mark.parametrize("args, message", [
    ({}, "token"),
    ({"token": TOKEN, "path": "alerts"}, "path must start"),
    ({"token": TOKEN, "port": "http"}, "port must be an integer"),
    ({"token": TOKEN, "host_pattern": "^[^:]+$"}, "one group"),
    ({"token": TOKEN, "host_pattern": "("}, "host_pattern"),
    ({"token": TOKEN, "hmac_algorithm": "md5"}, "hmac_algorithm"),
    ({"token": TOKEN, "max_body_bytes": 0}, "max_body_bytes"),
])
def test_bad_arguments_stop_the_source_with_a_clear_error(args, message, monkeypatch):
    monkeypatch.delenv("FLEETOPS_EDA_TOKEN", raising=False)
    monkeypatch.delenv("FLEETOPS_EDA_HMAC_SECRET", raising=False)
    with pytest.raises(ValueError, match=message):
        alertmanager.Settings(args)


def test_the_token_can_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("FLEETOPS_EDA_TOKEN", TOKEN)
    assert alertmanager.Settings({}).token == TOKEN


@pytest.mark.parametrize("instance, host_map, expected", [
    ("web-1:9100", {}, "web-1"),
    ("web-1", {}, "web-1"),
    ("10.0.0.5:9100", {"10.0.0.5": "web-1"}, "web-1"),
    ("[fd00::7]:9100", {}, "fd00::7"),
    ("web-1.example.com:9100", {"web-1.example.com": "web-1"}, "web-1"),
])
def test_instance_maps_to_the_inventory_host(instance, host_map, expected):
    settings = alertmanager.Settings({"token": TOKEN, "host_map": host_map})
    assert alertmanager.host_of({"instance": instance}, settings) == expected


def test_a_custom_host_rule_and_a_missing_label():
    settings = alertmanager.Settings({"token": TOKEN, "host_label": "node", "host_pattern": r"^([^.]+)"})
    assert alertmanager.host_of({"node": "web-2.dc1.example.com"}, settings) == "web-2"
    assert alertmanager.host_of({"instance": "web-2:9100"}, settings) is None
    events = alertmanager.events_of(dict(PAYLOAD, alerts=[{"status": "firing", "labels": {}}]), settings, "/")
    assert "host" not in events[0] and "hosts" not in events[0]["meta"]


def test_dedupe_memory_is_bounded():
    recent = alertmanager.RecentAlerts(window=3600, max_entries=3)
    alerts = [{"fingerprint": str(n), "startsAt": "t", "status": "firing"} for n in range(5)]
    assert all(recent.first_time(alert, now=0.0) for alert in alerts)
    # The oldest were forgotten to keep three entries; the newest are still remembered.
    assert recent.first_time(alerts[0], now=1.0)
    assert not recent.first_time(alerts[4], now=1.0)

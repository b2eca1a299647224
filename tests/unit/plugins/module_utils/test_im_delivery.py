# -*- coding: utf-8 -*-
"""Retries with a fake clock, the spool across a receiver outage, dedupe, and flushing in order."""

from __future__ import annotations

import json
import os
import ssl
import stat
import time
from urllib.error import URLError

import pytest

from ansible_collections.fleetops.health.plugins.module_utils.im_adapters import Notification, Target, adapter_for
from ansible_collections.fleetops.health.plugins.module_utils.im_delivery import (
    DedupeLedger,
    Notifier,
    PermanentDeliveryError,
    Sender,
    Spool,
    UndeliveredError,
)
from ansible_collections.fleetops.health.plugins.module_utils.state_file import StateDirError
from ansible_collections.fleetops.health.tests.unit.im_receivers import IMReceiver
from ansible_collections.fleetops.health.tests.unit.state_harness import (
    can_switch_user,
    run_unprivileged,
    shared_tmp,
    tree_digest,
)


class FakeClock(object):
    """time.time and time.sleep in one: sleeping moves the clock, and every wait is recorded."""

    def __init__(self):
        # Starts at the real time: the receivers check signed timestamps against their own clock.
        self.now = time.time()
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def make_notifier(receiver, spool_dir=None, clock=None, secret=None, on_undelivered="spool", **sender_options):
    clock = clock or FakeClock()
    adapter = adapter_for(receiver.platform)
    target = Target(receiver.platform, receiver.url, secret, "42")
    options = dict(retries=3, retry_delay=1.0, retry_max_delay=60.0, timeout=2)
    options.update(sender_options)
    sender = Sender(adapter, target, clock=clock, sleep=clock.sleep, **options)
    spool = dedupe = None
    if spool_dir:
        spool = Spool(str(spool_dir), clock=clock)
        spool.ensure_writable()
        dedupe = DedupeLedger(str(spool_dir), clock=clock)
    return Notifier(adapter, target, sender, spool, dedupe, on_undelivered), clock


def test_backoff_doubles_between_retries():
    with IMReceiver("wecom") as receiver:
        receiver.fail_next("rate_limit", "rate_limit", "server_error")
        notifier, clock = make_notifier(receiver)
        result = notifier.run(Notification("m"))
    assert result["delivered"] and result["attempts"] == 4 and result["status"] == 0
    assert clock.sleeps == [1.0, 2.0, 4.0]


@pytest.mark.parametrize("platform", ["slack", "telegram", "teams"])
def test_retry_after_is_honoured_when_longer_than_the_backoff(platform):
    with IMReceiver(platform, retry_after=9) as receiver:
        receiver.fail_next("rate_limit", "rate_limit")
        notifier, clock = make_notifier(receiver)
        result = notifier.run(Notification("m", chat_id="42"))
    assert result["delivered"] and result["attempts"] == 3
    assert clock.sleeps == [9, 9]


def test_backoff_is_capped_by_retry_max_delay():
    with IMReceiver("feishu") as receiver:
        receiver.fail_next(*["rate_limit"] * 5)
        notifier, clock = make_notifier(receiver, retries=5, retry_delay=2.0, retry_max_delay=10.0)
        assert notifier.run(Notification("m"))["delivered"]
    assert clock.sleeps == [2.0, 4.0, 8.0, 10.0, 10.0]


def test_retry_after_beyond_the_max_delay_spools_instead_of_waiting(tmp_path):
    with IMReceiver("slack", retry_after=600) as receiver:
        receiver.fail_next("rate_limit")
        notifier, clock = make_notifier(receiver, spool_dir=tmp_path)
        result = notifier.run(Notification("m"))
    assert (result["delivered"], result["spooled"], result["attempts"]) == (False, True, 1)
    assert clock.sleeps == []
    assert "600" in notifier.warnings[0] and "retry_max_delay" in notifier.warnings[0]


def test_each_retry_is_signed_with_a_fresh_timestamp():
    with IMReceiver("dingtalk", secret="SECfresh") as receiver:
        receiver.fail_next("rate_limit")
        notifier, _clock = make_notifier(receiver, secret="SECfresh", retry_delay=30.0)
        assert notifier.run(Notification("m"))["delivered"]
        stamps = [r["query"]["timestamp"] for r in receiver.requests]
    assert int(stamps[1]) - int(stamps[0]) == 30000


def test_permanent_errors_fail_at_once_without_retry(tmp_path):
    with IMReceiver("dingtalk", secret="SECright") as receiver:
        notifier, clock = make_notifier(receiver, spool_dir=tmp_path, secret="SECwrong")
        with pytest.raises(PermanentDeliveryError) as caught:
            notifier.run(Notification("m"))
        assert len(receiver.requests) == 1
    assert clock.sleeps == []
    assert "310000" in str(caught.value) and "SEC" in str(caught.value)
    assert caught.value.result["status"] == 310000 and caught.value.result["attempts"] == 1
    assert "SECwrong" not in str(caught.value) and receiver.token not in str(caught.value)
    assert Spool(str(tmp_path)).names() == []


def test_a_timeout_is_retryable(tmp_path):
    with IMReceiver("webhook") as receiver:
        receiver.fail_next("slow:1.5")
        notifier, clock = make_notifier(receiver, timeout=0.3)
        result = notifier.run(Notification("m"))
    assert result["delivered"] and result["attempts"] == 2 and result["status"] == 204


def test_outage_spools_then_flush_delivers_in_order_without_secrets(tmp_path):
    secret = "feishu-secret-xyz"
    receiver = IMReceiver("feishu", secret=secret).start()
    try:
        receiver.go_down()
        notifier, clock = make_notifier(receiver, spool_dir=tmp_path, secret=secret, retries=1)
        for number in range(3):
            result = notifier.run(Notification("alert %d" % number))
            assert (result["delivered"], result["spooled"], result["spool_remaining"]) == (False, True, number + 1)
            clock.now += 1
        assert "spooled" in notifier.warnings[0] and "Connection refused" in notifier.warnings[0]
        spooled = b"".join(open(os.path.join(tmp_path, "queue", n), "rb").read() for n in Spool(str(tmp_path)).names())
        assert secret.encode() not in spooled and receiver.token.encode() not in spooled
        assert b'"platform":"feishu"' in spooled
        for name in os.listdir(os.path.join(tmp_path, "queue")):
            assert stat.S_IMODE(os.stat(os.path.join(tmp_path, "queue", name)).st_mode) == 0o600

        receiver.come_back()
        # A new task, as a later run would be: only the spool directory is shared.
        flusher, _clock = make_notifier(receiver, spool_dir=tmp_path, secret=secret)
        result = flusher.run(Notification("alert new"), flush=True)
        assert (result["delivered"], result["flushed"], result["spool_remaining"]) == (True, 3, 0)
        texts = [m["content"]["text"].split("\n")[1] for m in receiver.messages]
        assert texts == ["alert 0", "alert 1", "alert 2", "alert new"]
        assert Spool(str(tmp_path)).names() == []
    finally:
        receiver.stop()


def test_flush_stops_at_the_first_failure_and_the_new_message_queues_behind(tmp_path):
    with IMReceiver("wecom") as receiver:
        notifier, clock = make_notifier(receiver, spool_dir=tmp_path, retries=0)
        receiver.go_down()
        notifier.run(Notification("old 1"))
        notifier.run(Notification("old 2"))
        receiver.come_back()
        receiver.fail_next("server_error")
        result = notifier.run(Notification("new"), flush=True)
        assert (result["flushed"], result["delivered"], result["spooled"], result["spool_remaining"]) == (0, False, True, 3)
        assert receiver.messages == [] and len(receiver.requests) == 1
        result = notifier.run(None, flush=True)
        assert result["flushed"] == 3
        assert [m["text"]["content"].split("\n")[1] for m in receiver.messages] == ["old 1", "old 2", "new"]


def test_flush_only_touches_its_own_target(tmp_path):
    with IMReceiver("wecom") as first, IMReceiver("wecom") as second:
        one, _unused = make_notifier(first, spool_dir=tmp_path, retries=0)
        two, _unused = make_notifier(second, spool_dir=tmp_path, retries=0)
        first.go_down()
        second.go_down()
        one.run(Notification("for first"))
        two.run(Notification("for second"))
        first.come_back()
        assert one.run(None, flush=True)["flushed"] == 1
        assert len(Spool(str(tmp_path)).names()) == 1


def test_permanent_error_during_flush_keeps_the_message_and_names_it(tmp_path):
    with IMReceiver("dingtalk") as receiver:
        notifier, _unused = make_notifier(receiver, spool_dir=tmp_path, retries=0)
        receiver.go_down()
        notifier.run(Notification("kept"))
        receiver.come_back()
        receiver.fail_next("bad_token")
        with pytest.raises(PermanentDeliveryError, match="spooled message .*json .*it stays in") as caught:
            notifier.run(Notification("new"), flush=True)
    assert caught.value.result["spool_remaining"] == 1
    assert len(Spool(str(tmp_path)).names()) == 1


def test_on_undelivered_fail_raises_and_keeps_nothing(tmp_path):
    with IMReceiver("teams") as receiver:
        receiver.fail_next("server_error", "server_error")
        notifier, clock = make_notifier(receiver, spool_dir=tmp_path, retries=1, on_undelivered="fail")
        with pytest.raises(UndeliveredError, match="not delivered after 2 attempt"):
            notifier.run(Notification("m"))
    assert Spool(str(tmp_path)).names() == [] and clock.sleeps == [1.0]


def test_dedupe_suppresses_repeats_within_the_window_and_reports_them(tmp_path):
    with IMReceiver("slack") as receiver:
        notifier, clock = make_notifier(receiver, spool_dir=tmp_path)
        first = notifier.run(Notification("disk full"), dedupe_key="disk:/var", dedupe_window=300)
        assert first["delivered"] and first["suppressed"] == 0
        for repeat in (1, 2, 3):
            clock.now += 60
            result = notifier.run(Notification("disk full"), dedupe_key="disk:/var", dedupe_window=300)
            assert (result["delivered"], result["suppressed"], result["attempts"]) == (False, repeat, 0)
        other = notifier.run(Notification("cpu"), dedupe_key="cpu", dedupe_window=300)
        assert other["delivered"]
        clock.now += 301
        after = notifier.run(Notification("disk full"), dedupe_key="disk:/var", dedupe_window=300)
    assert after["delivered"] and after["suppressed"] == 0
    assert len(receiver.messages) == 3
    assert "3 repeat(s) of this alert were suppressed" in receiver.messages[-1]["text"]


def test_corrupt_dedupe_ledger_is_set_aside_with_a_warning(tmp_path):
    with IMReceiver("wecom") as receiver:
        notifier, _unused = make_notifier(receiver, spool_dir=tmp_path)
        (tmp_path / "dedupe.json").write_text("{not json")
        assert notifier.run(Notification("m"), dedupe_key="k", dedupe_window=60)["delivered"]
    assert any("corrupt" in w for w in notifier.warnings)
    assert json.loads((tmp_path / "dedupe.json").read_text())


SPOOL_AS_USER = """
import json, sys
from ansible_collections.fleetops.health.plugins.module_utils.im_delivery import Spool
from ansible_collections.fleetops.health.plugins.module_utils.state_file import StateDirError
outcome = {}
for create in (True, False):
    try:
        Spool(sys.argv[1]).ensure_writable(create=create)
        outcome[str(create)] = "ok"
    except StateDirError as exc:
        outcome[str(create)] = str(exc)
print(json.dumps(outcome))
"""


@pytest.mark.skipif(os.geteuid() == 0 and not can_switch_user(), reason="root without runuser cannot drop privileges")
def test_unwritable_spool_dir_fails_naming_the_option():
    # Run as nobody: root would pass the permission check by privilege.
    with shared_tmp() as base:
        locked = os.path.join(base, "locked")
        os.mkdir(locked, 0o555)
        out = run_unprivileged(SPOOL_AS_USER, os.path.join(locked, "spool"))
        assert out.returncode == 0, out.stderr
        outcome = json.loads(out.stdout)
        for create in ("True", "False"):
            assert outcome[create].startswith("spool_dir: cannot create %s/spool" % locked), outcome
        assert os.listdir(locked) == []


def test_spool_file_in_the_way_fails_naming_the_option(tmp_path):
    # Works as root too: a regular file where the directory should be.
    (tmp_path / "spool").write_text("")
    with pytest.raises(StateDirError, match="^spool_dir: "):
        Spool(str(tmp_path / "spool")).ensure_writable()


def test_check_mode_preview_masks_signature_and_sends_nothing(tmp_path):
    with IMReceiver("webhook", secret="hmac-secret-77") as receiver:
        notifier, _unused = make_notifier(receiver, secret="hmac-secret-77")
        preview = notifier.preview(Notification("m", title="t"))
        assert receiver.requests == []
    assert preview["changed"] is True
    assert preview["request"]["headers"]["X-Signature-256"] == "********"
    assert preview["request"]["url"].endswith("/********")
    assert preview["request"]["body"]["message"] == "m"
    assert receiver.token not in json.dumps(preview)


def test_an_untrusted_certificate_is_permanent_and_not_retried():
    # Building a TLS endpoint with an untrusted CA is out of reach here; the transport's error is what urllib raises.
    def untrusted(url, body, headers):
        raise URLError(ssl.SSLCertVerificationError(1, "certificate verify failed: self-signed certificate"))

    clock = FakeClock()
    target = Target("slack", "https://hooks.example/services/T0123/B0123/abcdefghijklmnopqrstuvwx")
    log = Sender(adapter_for("slack"), target, clock=clock, sleep=clock.sleep, post=untrusted).send({"text": "x"})
    assert (log.outcome.kind, log.attempts, clock.sleeps) == ("permanent", 1, [])
    assert "validate_certs" in log.outcome.hint


def test_a_receiver_bound_to_all_addresses_is_reachable_by_name():
    with IMReceiver("webhook", host="0.0.0.0") as receiver:
        assert receiver.url == receiver.url_for("127.0.0.1")
        url = receiver.url_for("localhost")
        sender = Sender(adapter_for("webhook"), Target("webhook", url), retries=0)
        assert sender.send({"message": "from a lab host"}).delivered
    assert receiver.messages == [{"message": "from a lab host"}]


def test_check_mode_predicts_a_flush(tmp_path):
    with IMReceiver("wecom") as receiver:
        notifier, _clock = make_notifier(receiver, spool_dir=tmp_path, retries=0)
        assert notifier.preview(None, flush=True)["changed"] is False
        receiver.go_down()
        notifier.run(Notification("kept"))
        preview = notifier.preview(None, flush=True)
    assert (preview["changed"], preview["spool_remaining"]) == (True, 1)
    assert len(Spool(str(tmp_path)).names()) == 1


BAD_SPOOL_ENTRIES = {
    "0-0-unreadable.json": "{x",
    "0-1-list.json": "[1, 2]",
    "0-2-nopayload.json": json.dumps({"version": 1, "platform": "wecom", "target": "t", "created": 1}),
    "0-3-wrongversion.json": json.dumps({"version": 9, "platform": "wecom", "target": "t", "payload": {}}),
}


def plant_bad_entries(spool_dir):
    queue = spool_dir / "queue"
    for name, content in BAD_SPOOL_ENTRIES.items():
        (queue / name).write_text(content)
    (queue / "0-4-symlink.json").symlink_to(spool_dir / "victim")


@pytest.mark.parametrize("flush", [False, True])
def test_bad_spool_entries_are_quarantined_and_never_stop_a_message(tmp_path, flush):
    with IMReceiver("wecom") as receiver:
        notifier, _clock = make_notifier(receiver, spool_dir=tmp_path, retries=0)
        receiver.go_down()
        notifier.run(Notification("kept while down"))
        receiver.come_back()
        plant_bad_entries(tmp_path)
        notifier.warnings = []
        result = notifier.run(Notification("new"), flush=flush)
    assert result["delivered"] is True
    assert (result["flushed"], result["spool_remaining"]) == ((1, 0) if flush else (0, 1))
    quarantined = sorted(name for name in os.listdir(str(tmp_path / "queue")) if ".corrupt-" in name)
    assert [name.split(".json.corrupt-")[0] + ".json" for name in quarantined] == sorted(
        list(BAD_SPOOL_ENTRIES) + ["0-4-symlink.json"])
    moved = [w for w in notifier.warnings if "is unusable" in w and "moved it to" in w]
    assert len(moved) == 5, notifier.warnings
    assert not os.path.lexists(str(tmp_path / "victim"))
    assert [m["text"]["content"] for m in receiver.messages] == (
        ["[INFO]\nkept while down", "[INFO]\nnew"] if flush else ["[INFO]\nnew"])


def test_check_mode_reports_bad_spool_entries_and_leaves_them(tmp_path):
    with IMReceiver("wecom") as receiver:
        make_notifier(receiver, spool_dir=tmp_path)
        plant_bad_entries(tmp_path)
        before = tree_digest(tmp_path)
        spool = Spool(str(tmp_path), check_mode=True)
        notifier = Notifier(adapter_for("wecom"), Target("wecom", receiver.url), None, spool,
                            DedupeLedger(str(tmp_path), check_mode=True))
        notifier.sender = Sender(notifier.adapter, notifier.target, retries=0)
        preview = notifier.preview(Notification("m"), flush=True, dedupe_key="k", dedupe_window=60)
    assert tree_digest(tmp_path) == before
    assert preview["spool_remaining"] == 0 and receiver.requests == []
    assert len([w for w in notifier.warnings if "check mode leaves it" in w]) == 5


def test_a_delivered_message_stays_delivered_when_the_spool_breaks_afterwards(tmp_path):
    with IMReceiver("wecom") as receiver:
        notifier, _clock = make_notifier(receiver, spool_dir=tmp_path)
        real_post = notifier.sender.post

        def deliver_then_break_the_spool(url, body, headers):
            answer = real_post(url, body, headers)
            (tmp_path / "queue" / "1-late.json").write_text("{torn")
            return answer

        notifier.sender.post = deliver_then_break_the_spool
        result = notifier.run(Notification("m"), dedupe_key="k", dedupe_window=60)
    assert result["delivered"] is True and len(receiver.messages) == 1
    assert notifier.warnings, "the trouble with the spool is reported"


def test_a_message_that_was_neither_sent_nor_spooled_gives_back_its_dedupe_claim(tmp_path):
    with IMReceiver("teams") as receiver:
        receiver.fail_next("server_error")
        notifier, _clock = make_notifier(receiver, spool_dir=tmp_path, retries=0, on_undelivered="fail")
        with pytest.raises(UndeliveredError):
            notifier.run(Notification("m"), dedupe_key="k", dedupe_window=300)
        retried = notifier.run(Notification("m"), dedupe_key="k", dedupe_window=300)
    assert retried["delivered"] is True and retried["suppressed"] == 0

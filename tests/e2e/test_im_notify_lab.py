"""fleetops.health.im_notify on a lab host, sending to a contract receiver on this machine.

The receivers (tests/unit/im_receivers.py) listen on 0.0.0.0 and check the signature the way DingTalk and
Feishu do, so a message they accept was signed right by the lab host. The spool lives on the lab host:
the receiver goes down, the message is spooled there, the receiver comes back, a flush delivers it.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from helpers_tasks import module_result, run_tasks, run_tasks_unchecked  # noqa: E402  pylint: disable=C0413
from im_receivers import IMReceiver  # noqa: E402  pylint: disable=wrong-import-position

HOST_ADDRESS_FROM_LAB = "host.containers.internal"
SPOOL_DIR = "/var/lib/fleetops/e2e-im-spool"
SECRETS = {"dingtalk": "SECe2e-im-notify-5b1d0c9e7f", "feishu": "e2e-feishu-secret-2a9c4e"}


@pytest.fixture
def sender(lab):
    """The lab host that sends, with no spool left by an earlier test."""
    host = lab.hosts[0]
    assert lab.exec(host, "rm", "-rf", SPOOL_DIR).returncode == 0
    yield host
    lab.exec(host, "rm", "-rf", SPOOL_DIR)


def notify_args(receiver, **extra):
    args = {"platform": receiver.platform, "url": receiver.url_for(HOST_ADDRESS_FROM_LAB),
            "secret": receiver.secret, "sign": True, "spool_dir": SPOOL_DIR, "retries": 1, "retry_delay": 0.2,
            "timeout": 3}
    args.update(extra)
    return args


def spooled_files(lab, host):
    listed = lab.exec(host, "find", SPOOL_DIR, "-path", "*/queue/*", "-type", "f")
    return sorted(listed.stdout.split())


@pytest.mark.parametrize("platform", ["dingtalk", "feishu"])
def test_a_signed_message_from_a_lab_host_is_accepted(lab, run_playbook, tmp_path, sender, platform):
    with IMReceiver(platform, host="0.0.0.0", secret=SECRETS[platform]) as receiver:
        args = notify_args(receiver, title=f"{sender}: disk /var at 93%", msg="runs out in about 6 hours",
                           severity="warning")

        result = run_tasks(run_playbook, tmp_path, sender, [("notify", "fleetops.health.im_notify", args)])

        outcome = module_result(result, "notify", sender)
        assert outcome["delivered"] is True and outcome["spooled"] is False, outcome
        assert outcome["attempts"] == 1 and outcome["status"] == 0 and outcome["changed"] is True
        (message,) = receiver.wait_for(1)
        assert receiver.rejections == []
        assert sender in str(message) and "runs out in about 6 hours" in str(message)
        # The request really carried a signature the receiver checked, made on the lab host.
        (request,) = receiver.requests
        signature = request["query"].get("sign") if platform == "dingtalk" else message.get("sign")
        assert signature
        assert SECRETS[platform] not in result.stdout + result.stderr
        assert receiver.token not in result.stdout


def test_a_wrong_secret_is_refused_at_once_with_a_hint(lab, run_playbook, tmp_path, sender):
    with IMReceiver("dingtalk", host="0.0.0.0", secret=SECRETS["dingtalk"]) as receiver:
        args = notify_args(receiver, secret="SECnot-the-robots-secret", msg="signed with the wrong secret")

        result = run_tasks_unchecked(run_playbook, tmp_path, sender,
                                     [("notify", "fleetops.health.im_notify", args)])

        outcome = module_result(result, "notify", sender)
        assert outcome.get("failed") is True
        assert "310000" in outcome["msg"] and outcome["attempts"] == 1  # a bad signature is not retried
        assert receiver.rejections == [("bad_sign", "sign not match")]
        assert receiver.messages == []
        assert spooled_files(lab, sender) == []


def test_spooled_on_the_host_while_the_receiver_is_down_then_flushed(lab, run_playbook, tmp_path, sender):
    secret = SECRETS["dingtalk"]
    with IMReceiver("dingtalk", host="0.0.0.0", secret=secret) as receiver:
        receiver.go_down()
        result = run_tasks(run_playbook, tmp_path, sender, [
            ("first alert", "fleetops.health.im_notify", notify_args(receiver, msg="first alert, spooled")),
            ("second alert", "fleetops.health.im_notify", notify_args(receiver, msg="second alert, spooled")),
        ])

        for task in ("first alert", "second alert"):
            outcome = module_result(result, task, sender)
            assert outcome["delivered"] is False and outcome["spooled"] is True, outcome
            assert outcome["attempts"] == 2  # retries: 1
        assert module_result(result, "second alert", sender)["spool_remaining"] == 2
        spooled = spooled_files(lab, sender)
        assert len(spooled) == 2
        on_disk = lab.exec(sender, "cat", *spooled).stdout
        assert "first alert, spooled" in on_disk
        assert secret not in on_disk and receiver.token not in on_disk  # the flushing task brings them again

        receiver.come_back()
        flush = notify_args(receiver, msg="third alert, live", flush_spool=True)
        result = run_tasks(run_playbook, tmp_path, sender, [("flush with a new alert", "fleetops.health.im_notify", flush)])

        outcome = module_result(result, "flush with a new alert", sender)
        assert outcome["flushed"] == 2 and outcome["delivered"] is True and outcome["spool_remaining"] == 0
        messages = receiver.wait_for(3)
        assert [message["text"]["content"].splitlines()[-1] for message in messages] == [
            "first alert, spooled", "second alert, spooled", "third alert, live"]
        assert receiver.rejections == []  # each spooled message was signed afresh when it was flushed
        assert spooled_files(lab, sender) == []


def test_dedupe_ledger_on_the_host_suppresses_a_repeat(lab, run_playbook, tmp_path, sender):
    with IMReceiver("dingtalk", host="0.0.0.0", secret=SECRETS["dingtalk"]) as receiver:
        alert = notify_args(receiver, msg="disk /var at 93%", dedupe_key=f"disk:{sender}:/var", dedupe_window=600)
        result = run_tasks(run_playbook, tmp_path, sender, [
            ("first", "fleetops.health.im_notify", alert), ("repeat", "fleetops.health.im_notify", alert)])

        first, repeat = module_result(result, "first", sender), module_result(result, "repeat", sender)
        assert first["delivered"] is True and first["changed"] is True
        assert repeat["delivered"] is False and repeat["spooled"] is False, repeat
        assert repeat["suppressed"] == 1 and repeat["changed"] is False  # the repeats in this window, this one included
        assert len(receiver.wait_for(1)) == 1 and len(receiver.requests) == 1
        assert lab.exec(sender, "test", "-s", f"{SPOOL_DIR}/dedupe.json").returncode == 0

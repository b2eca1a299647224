# -*- coding: utf-8 -*-
"""The im_notify module: in-process for the option handling, through ansible-playbook -vvv for secrecy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from ansible.module_utils import _internal as module_internal
from ansible.module_utils.testing import patch_module_args
from ansible_collections.fleetops.health.plugins.modules import im_notify
from ansible_collections.fleetops.health.tests.unit.conftest import COLLECTION_ROOT
from ansible_collections.fleetops.health.tests.unit.im_receivers import IMReceiver


@pytest.fixture(autouse=True)
def module_side_warnings(monkeypatch):
    # Importing controller code (the callback tests do) makes module warnings go to the controller's
    # display instead of the result; a real module process never has controller code loaded.
    monkeypatch.setattr(module_internal, "is_controller", False)


def run_module(capsys, args, check_mode=False):
    if check_mode:
        args = dict(args, _ansible_check_mode=True)
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            im_notify.main()
    return json.loads(capsys.readouterr().out)


def test_delivers_and_reports_the_platform_status(capsys, tmp_path):
    with IMReceiver("wecom") as receiver:
        result = run_module(capsys, {"platform": "wecom", "url": receiver.url, "msg": "m", "title": "t",
                                     "spool_dir": str(tmp_path)})
    assert result["changed"] is True
    assert {k: result[k] for k in ("delivered", "spooled", "suppressed", "attempts", "platform", "status",
                                   "truncated", "flushed", "spool_remaining")} == {
        "delivered": True, "spooled": False, "suppressed": 0, "attempts": 1, "platform": "wecom", "status": 0,
        "truncated": False, "flushed": 0, "spool_remaining": 0}
    assert receiver.messages[0]["text"]["content"] == "[INFO] t\nm"


def test_undelivered_is_spooled_with_a_warning_not_a_failure(capsys, tmp_path):
    receiver = IMReceiver("slack").start()
    receiver.go_down()
    result = run_module(capsys, {"platform": "slack", "url": receiver.url, "msg": "m", "retries": 0,
                                 "spool_dir": str(tmp_path)})
    assert "failed" not in result
    assert (result["delivered"], result["spooled"], result["changed"]) == (False, True, True)
    assert "message spooled in" in json.dumps(result["warnings"]) and receiver.token not in json.dumps(result)
    receiver.come_back()
    try:
        result = run_module(capsys, {"platform": "slack", "url": receiver.url, "flush_spool": True,
                                     "spool_dir": str(tmp_path)})
    finally:
        receiver.stop()
    assert (result["flushed"], result["spool_remaining"], result["changed"]) == (1, 0, True)


def test_permanent_error_fails_with_code_and_hint(capsys, tmp_path):
    with IMReceiver("dingtalk", secret="SECgood") as receiver:
        result = run_module(capsys, {"platform": "dingtalk", "url": receiver.url, "secret": "SECbad", "msg": "m",
                                     "spool_dir": str(tmp_path)})
    assert result["failed"] is True and result["status"] == 310000 and result["attempts"] == 1
    assert "sign not match" in result["msg"] and "SEC" in result["hint"]
    assert "SECbad" not in json.dumps(result)


@pytest.mark.parametrize("args,needle", [
    ({"platform": "telegram"}, "chat_id"),
    ({"platform": "wecom", "url": "ftp://example.com/x"}, "url: must be an http"),
    ({"platform": "dingtalk", "sign": True}, "secret: required because sign is true"),
    ({"platform": "slack", "secret": "x"}, "secret: slack messages are not signed"),
    ({"platform": "wecom", "msg": None}, "msg: required unless flush_spool"),
    ({"platform": "wecom", "retries": -1}, "retries: must be a whole number from 0 to 20"),
    ({"platform": "msn"}, "platform"),
])
def test_bad_input_fails_naming_the_option(capsys, tmp_path, args, needle):
    base = {"url": "http://127.0.0.1:9/hook", "msg": "m", "spool_dir": str(tmp_path)}
    base.update(args)
    result = run_module(capsys, base)
    assert result["failed"] is True and needle in result["msg"]


def test_unwritable_spool_fails_before_sending(capsys, tmp_path):
    (tmp_path / "blocked").write_text("a file where the spool directory should be")
    with IMReceiver("wecom") as receiver:
        result = run_module(capsys, {"platform": "wecom", "url": receiver.url, "msg": "m",
                                     "spool_dir": str(tmp_path / "blocked")})
        assert receiver.requests == []
    assert result["failed"] is True and result["msg"].startswith("im_notify: spool_dir: ")


def test_on_undelivered_fail_does_not_need_a_spool(capsys, tmp_path):
    (tmp_path / "blocked").write_text("")
    with IMReceiver("teams") as receiver:
        receiver.fail_next("server_error")
        result = run_module(capsys, {"platform": "teams", "url": receiver.url, "msg": "m", "retries": 0,
                                     "on_undelivered": "fail", "spool_dir": str(tmp_path / "blocked")})
    assert result["failed"] is True and "not delivered after 1 attempt" in result["msg"]


def test_check_mode_renders_masks_and_sends_nothing(capsys, tmp_path):
    with IMReceiver("feishu", secret="fs-secret-1") as receiver:
        result = run_module(capsys, {"platform": "feishu", "url": receiver.url, "secret": "fs-secret-1",
                                     "msg": "m", "format": "markdown", "severity": "warning",
                                     "spool_dir": str(tmp_path / "not-created")}, check_mode=True)
        assert receiver.requests == []
    assert result["changed"] is True and result["delivered"] is False
    assert result["request"]["body"]["sign"] == "********"
    assert result["request"]["body"]["card"]["header"]["template"] == "orange"
    assert not (tmp_path / "not-created").exists()
    assert receiver.token not in json.dumps(result) and "fs-secret-1" not in json.dumps(result)


def test_dedupe_suppression_is_not_a_change(capsys, tmp_path):
    with IMReceiver("wecom") as receiver:
        args = {"platform": "wecom", "url": receiver.url, "msg": "m", "spool_dir": str(tmp_path),
                "dedupe_key": "disk", "dedupe_window": 600}
        assert run_module(capsys, args)["changed"] is True
        second = run_module(capsys, args)
    assert (second["changed"], second["suppressed"], second["delivered"]) == (False, 1, False)
    assert len(receiver.messages) == 1


PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  vars:
    spool: "{{ spool_dir }}"
  tasks:
    - name: Signed DingTalk message
      fleetops.health.im_notify:
        platform: dingtalk
        url: "{{ ding_url }}"
        secret: "{{ ding_secret }}"
        msg: deploy finished
        severity: resolved
        spool_dir: "{{ spool }}"
      register: sent

    - name: Feishu is down, so the message is spooled
      fleetops.health.im_notify:
        platform: feishu
        url: "{{ feishu_url }}"
        secret: "{{ feishu_secret }}"
        msg: disk full
        retries: 1
        retry_delay: 0.1
        spool_dir: "{{ spool }}"
      register: spooled

    - name: Wrong DingTalk secret fails
      fleetops.health.im_notify:
        platform: dingtalk
        url: "{{ ding_url }}"
        secret: "SECwrong{{ ding_secret }}"
        msg: nope
        spool_dir: "{{ spool }}"
      register: refused
      ignore_errors: true

    - name: Check mode preview
      fleetops.health.im_notify:
        platform: dingtalk
        url: "{{ ding_url }}"
        secret: "{{ ding_secret }}"
        msg: preview
        spool_dir: "{{ spool }}"
      check_mode: true
      register: preview

    - name: What the tasks reported
      ansible.builtin.assert:
        that:
          - sent.delivered and sent.status == 0
          - spooled.spooled and not spooled.delivered and spooled.warnings | length == 1
          - refused.failed and refused.status == 310000
          - preview.request.url.endswith('/********')
"""

FLUSH_PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - fleetops.health.im_notify:
        platform: feishu
        url: "{{ feishu_url }}"
        secret: "{{ feishu_secret }}"
        flush_spool: true
        spool_dir: "{{ spool_dir }}"
      register: flushed

    - ansible.builtin.assert:
        that: flushed.flushed == 1 and flushed.spool_remaining == 0
"""


def run_playbook(tmp_path, text, extra_vars):
    playbook = tmp_path / "play.yml"
    playbook.write_text(textwrap.dedent(text))
    env = dict(os.environ,
               ANSIBLE_CONFIG=os.path.join(COLLECTION_ROOT, "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=os.pathsep.join([os.path.join(COLLECTION_ROOT, ".cache", "dev-collections"),
                                                         os.path.join(COLLECTION_ROOT, ".cache", "collections")]),
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"), ANSIBLE_NOCOLOR="1")
    extra_vars = dict(extra_vars, ansible_python_interpreter=sys.executable)
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-vvv", "-i", "localhost,",
               "-c", "local", "-e", json.dumps(extra_vars), str(playbook)]
    done = subprocess.run(command, env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=120, check=False)
    return done.returncode, done.stdout + done.stderr


def test_secrets_never_appear_in_vvv_output_or_the_spool(tmp_path):
    ding_secret, feishu_secret = "SECding-5ecret-0123456789", "feishu-5ecret-0123456789"
    spool_dir = tmp_path / "spool"
    with IMReceiver("dingtalk", secret=ding_secret) as ding:
        feishu = IMReceiver("feishu", secret=feishu_secret).start()
        feishu.go_down()
        try:
            extra = {"ding_url": ding.url, "ding_secret": ding_secret, "feishu_url": feishu.url,
                     "feishu_secret": feishu_secret, "spool_dir": str(spool_dir)}
            rc, output = run_playbook(tmp_path, PLAYBOOK, extra)
            assert rc == 0, output[-3000:]
            spool_bytes = b"".join(open(os.path.join(root, name), "rb").read()
                                   for root, _dirs, names in os.walk(str(spool_dir)) for name in names)
            assert b"disk full" in spool_bytes
            feishu.come_back()
            flush_rc, flush_output = run_playbook(tmp_path, FLUSH_PLAYBOOK, extra)
            assert flush_rc == 0, flush_output[-3000:]
            assert feishu.messages[0]["content"]["text"].endswith("disk full")
        finally:
            feishu.stop()
    assert len(ding.messages) == 1
    assert "sign not match" in output and "ok=5" in output
    # -e puts the values on the command line, which -vvv does not print; the tasks themselves must not leak.
    for secret in (ding_secret, feishu_secret, ding.token, feishu.token):
        assert secret not in output
        assert secret not in flush_output
        assert secret.encode() not in spool_bytes

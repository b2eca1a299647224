# -*- coding: utf-8 -*-
"""Adapters against the contract receivers: payloads, signatures, limits and the classification of answers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest

from ansible_collections.fleetops.health.plugins.module_utils import im_adapters
from ansible_collections.fleetops.health.plugins.module_utils.im_adapters import (
    ConfigError,
    Notification,
    Outcome,
    Target,
    adapter_for,
    encode_body,
    truncate_utf8,
)
from ansible_collections.fleetops.health.plugins.module_utils.im_delivery import Sender
from ansible_collections.fleetops.health.tests.unit.im_receivers import PLATFORMS, IMReceiver

SECRETS = {"dingtalk": "SECdingtalk0123456789", "feishu": "feishu-secret-42", "lark": "lark-secret-42",
           "webhook": "webhook-secret-42"}


def send_once(receiver, notification, secret=None, clock=time.time):
    adapter = adapter_for(receiver.platform)
    target = Target(receiver.platform, receiver.url, secret, notification.chat_id)
    payload, truncated = adapter.render(notification)
    log = Sender(adapter, target, retries=0, clock=clock).send(payload)
    return log.outcome, truncated


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("fmt", ["text", "markdown"])
def test_every_platform_delivers_signed_messages(platform, fmt):
    secret = SECRETS.get(platform)
    with IMReceiver(platform, secret=secret) as receiver:
        note = Notification("disk /var at 93%", title="db1", format=fmt, severity="critical", chat_id="-1001")
        outcome, truncated = send_once(receiver, note, secret)
        assert outcome.kind == Outcome.DELIVERED, (outcome, receiver.rejections)
        assert truncated is False
        rendered = json.dumps(receiver.messages[0], ensure_ascii=False)
        assert "disk /var at 93%" in rendered
        assert "CRITICAL" in rendered.upper()


@pytest.mark.parametrize("platform", ["dingtalk", "feishu", "lark", "webhook"])
def test_wrong_secret_is_refused_by_the_receiver(platform):
    with IMReceiver(platform, secret=SECRETS[platform]) as receiver:
        outcome, _unused = send_once(receiver, Notification("x"), "SECwrong-secret")
        assert outcome.kind == Outcome.PERMANENT
        assert receiver.messages == []


@pytest.mark.parametrize("platform,code,hint_word", [("dingtalk", 310000, "NTP"), ("feishu", 19021, "clock")])
def test_stale_timestamp_is_permanent_with_a_clock_hint(platform, code, hint_word):
    # The receiver's clock runs two hours ahead of ours: the platform sees a stale timestamp.
    with IMReceiver(platform, secret=SECRETS[platform], clock=lambda: time.time() + 7200) as receiver:
        outcome, _unused = send_once(receiver, Notification("x"), SECRETS[platform])
    assert (outcome.kind, outcome.status) == (Outcome.PERMANENT, code)
    assert hint_word in outcome.hint


def test_dingtalk_signature_mismatch_hints_at_the_sec_secret():
    with IMReceiver("dingtalk", secret="SECright") as receiver:
        outcome, _unused = send_once(receiver, Notification("x"), "SECwrong")
    assert outcome.status == 310000 and "sign not match" in outcome.message
    assert "SEC" in outcome.hint


def test_dingtalk_signature_follows_the_documented_algorithm():
    target = Target("dingtalk", "https://oapi.dingtalk.com/robot/send?access_token=abc", "SECkey")
    url, _body, _headers = adapter_for("dingtalk").prepare(target, {"msgtype": "text"}, 1700000000.123)
    expected = base64.b64encode(hmac.new(b"SECkey", b"1700000000123\nSECkey", hashlib.sha256).digest())
    assert url.endswith("&timestamp=1700000000123&sign=" + im_adapters.quote_plus(expected))


def test_feishu_signature_uses_string_to_sign_as_key_and_seconds():
    target = Target("feishu", "https://open.feishu.cn/open-apis/bot/v2/hook/x", "fs")
    _url, body, _headers = adapter_for("feishu").prepare(target, {"msg_type": "text"}, 1700000000.9)
    document = json.loads(body)
    assert document["timestamp"] == "1700000000"
    assert document["sign"] == base64.b64encode(hmac.new(b"1700000000\nfs", b"", hashlib.sha256).digest()).decode()


@pytest.mark.parametrize("platform,answer,code", [
    ("wecom", "rate_limit", 45009), ("dingtalk", "rate_limit", 130101), ("feishu", "rate_limit", 9499),
    ("slack", "rate_limit", 429), ("teams", "rate_limit", 429), ("telegram", "rate_limit", 429),
    ("webhook", "server_error", 502), ("teams", "server_error", 502),
])
def test_rate_limits_and_server_errors_are_retryable(platform, answer, code):
    with IMReceiver(platform, secret=SECRETS.get(platform), retry_after=7) as receiver:
        receiver.fail_next(answer)
        outcome, _unused = send_once(receiver, Notification("x", chat_id="1"), SECRETS.get(platform))
    assert (outcome.kind, outcome.status) == (Outcome.RETRYABLE, code)
    if answer == "rate_limit" and platform in ("slack", "teams", "telegram"):
        assert outcome.retry_after == 7


@pytest.mark.parametrize("platform,answer,code,hint_word", [
    ("wecom", "bad_key", 93000, "key="), ("wecom", "bad_msgtype", 40008, "message type"),
    ("dingtalk", "bad_token", 300001, "access_token"), ("dingtalk", "keywords", 310000, "keyword"),
    ("feishu", "keywords", 19024, "keyword"), ("slack", "invalid_payload", 400, "invalid_payload"),
    ("slack", "channel_is_archived", 410, "unarchive"), ("telegram", "unauthorized", 401, "bot token"),
    ("telegram", "chat_not_found", 400, "chat_id"), ("webhook", "bad_signature", 401, "secret"),
])
def test_refusals_are_permanent_with_code_and_hint(platform, answer, code, hint_word):
    with IMReceiver(platform) as receiver:
        receiver.fail_next(answer)
        outcome, _unused = send_once(receiver, Notification("x", chat_id="1"))
    assert (outcome.kind, outcome.status) == (Outcome.PERMANENT, code)
    assert hint_word in outcome.hint


def test_http_200_with_an_error_code_is_not_success():
    with IMReceiver("wecom") as receiver:
        receiver.fail_next("bad_key")
        outcome, _unused = send_once(receiver, Notification("x"))
        assert receiver.requests[0]["status"] == 200
    assert outcome.kind == Outcome.PERMANENT


def test_feishu_old_statuscode_answer_is_understood():
    adapter = adapter_for("feishu")
    assert adapter.classify(200, {}, b'{"StatusCode":0,"StatusMessage":"success"}').kind == Outcome.DELIVERED
    assert adapter.classify(200, {}, b'{"code":19021,"msg":"sign match fail"}').kind == Outcome.PERMANENT


def test_retry_after_http_date_is_understood():
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= im_adapters.parse_retry_after(when) <= 31
    assert im_adapters.parse_retry_after("12") == 12.0
    assert im_adapters.parse_retry_after("soon") is None


@pytest.mark.parametrize("text,limit,expected", [
    (u"abc", 3, u"abc"),
    (u"\u4e16\u754c\u4e16\u754c", 9, u"\u4e16\u754c\u2026"),   # 3-byte characters, ellipsis is 3 bytes
    (u"\u4e16\u754c\u4e16\u754c", 10, u"\u4e16\u754c\u2026"),  # never half a character
    (u"a\U0001F525b", 5, u"a\u2026"),                         # a 4-byte emoji is dropped whole
])
def test_truncate_utf8_cuts_at_a_character_boundary(text, limit, expected):
    cut, truncated = truncate_utf8(text, limit)
    assert cut == expected
    assert truncated is (text != expected)
    assert len(cut.encode("utf-8")) <= limit


@pytest.mark.parametrize("platform,fmt,field_bytes", [
    ("wecom", "text", 2048), ("wecom", "markdown", 4096), ("dingtalk", "text", 20000),
    ("slack", "markdown", 3000), ("telegram", "text", 4096),
])
def test_long_content_is_cut_to_the_platform_limit_and_accepted(platform, fmt, field_bytes):
    with IMReceiver(platform) as receiver:
        outcome, truncated = send_once(receiver, Notification(u"\u544a\u8b66" * 6000, format=fmt, chat_id="1"))
        assert outcome.kind == Outcome.DELIVERED, receiver.rejections
    assert truncated is True


@pytest.mark.parametrize("platform,limit", [("feishu", 20 * 1024), ("teams", 28 * 1024)])
def test_long_content_fits_the_body_limit(platform, limit):
    # Quotes and newlines grow when JSON-escaped, so the body, not the text, is what must fit.
    note = Notification(u"\u544a\"\n" * 20000, format="markdown")
    payload, truncated = adapter_for(platform).render(note)
    assert truncated and limit - 1024 < len(encode_body(payload)) <= limit
    with IMReceiver(platform) as receiver:
        outcome, _unused = send_once(receiver, note)
    assert outcome.kind == Outcome.DELIVERED


def test_wecom_text_mentions_and_markdown_colour():
    adapter = adapter_for("wecom")
    mentions = {"all": True, "mobiles": ["13800000000"], "user_ids": ["zhangsan"]}
    text, _unused = adapter.render(Notification("m", mentions=mentions))
    assert text["text"]["mentioned_list"] == ["zhangsan", "@all"]
    assert text["text"]["mentioned_mobile_list"] == ["13800000000"]
    markdown, _unused = adapter.render(Notification("m", title="t", format="markdown", severity="resolved", mentions=mentions))
    assert '<font color="info">[RESOLVED] t</font>' in markdown["markdown"]["content"]
    assert "<@zhangsan>" in markdown["markdown"]["content"]


def test_dingtalk_mentions_appear_in_text_and_at_block():
    payload, _unused = adapter_for("dingtalk").render(Notification("m", mentions={"mobiles": ["138"], "all": False}))
    assert payload["at"] == {"atMobiles": ["138"], "atUserIds": [], "isAtAll": False}
    assert "@138" in payload["text"]["content"]


def test_unsupported_mentions_warn_and_unsigned_platforms_refuse_a_secret():
    note = Notification("m", mentions={"mobiles": ["138"]})
    warnings = adapter_for("slack").validate(Target("slack", "https://h/x"), note, None)
    assert warnings == ["mentions.mobiles: slack cannot mention by mobiles; ignored"]
    with pytest.raises(ConfigError, match="^secret: wecom"):
        adapter_for("wecom").validate(Target("wecom", "https://h/x", "s"), note, None)
    with pytest.raises(ConfigError, match="^sign: teams messages are not signed"):
        adapter_for("teams").validate(Target("teams", "https://h/x"), note, True)
    markdown = Notification("m", format="markdown", mentions={"mobiles": ["138"]})
    assert adapter_for("wecom").validate(Target("wecom", "https://h/x"), markdown, None) == [
        "mentions.mobiles: wecom cannot mention by mobiles; ignored"]
    assert adapter_for("wecom").validate(Target("wecom", "https://h/x"), note, None) == []
    with pytest.raises(ConfigError, match="^secret: required because sign is true"):
        adapter_for("dingtalk").validate(Target("dingtalk", "https://h/x"), note, True)
    with pytest.raises(ConfigError, match="^chat_id"):
        adapter_for("telegram").validate(Target("telegram", "https://h/x"), note, None)


def test_dingtalk_secret_without_sec_prefix_warns():
    warnings = adapter_for("dingtalk").validate(Target("dingtalk", "https://h/x", "abc"), Notification("m"), None)
    assert any("start with SEC" in w for w in warnings)


@pytest.mark.parametrize("url", ["ftp://h/x?key=TOPSECRET", "qyapi.weixin.qq.com/x?key=TOPSECRET", ""])
def test_bad_urls_fail_naming_url_without_echoing_it(url):
    with pytest.raises(ConfigError, match="^url: ") as caught:
        Target("wecom", url)
    assert "TOPSECRET" not in str(caught.value)


@pytest.mark.parametrize("bad", [{"platform": "msn"}, {"severity": "fatal"}, {"format": "html"}])
def test_bad_choices_name_the_option(bad):
    name = list(bad)[0]
    with pytest.raises(ConfigError, match="^%s: " % name):
        if name == "platform":
            adapter_for(bad[name])
        else:
            Notification("m", **bad)


def test_target_identity_and_label_hide_the_token():
    target = Target("wecom", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY-0123456789", "s3cret")
    assert target.label == "wecom https://qyapi.weixin.qq.com/********"
    assert "KEY-0123456789" in target.sensitive_strings()
    assert "s3cret" in target.sensitive_strings()
    other = Target("wecom", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=OTHER-0123456789")
    assert target.identity != other.identity and len(target.identity) == 16


def test_only_credential_looking_url_parts_are_masked():
    slack = Target("slack", "https://hooks.slack.com/services/T024BE7LD/B01ABCDEF/abcdefghijklmnopqrstuvwx")
    assert {"T024BE7LD", "B01ABCDEF", "abcdefghijklmnopqrstuvwx"} <= set(slack.sensitive_strings())
    assert "services" not in slack.sensitive_strings()
    telegram = Target("telegram", "https://api.telegram.org/bot123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/sendMessage")
    assert "bot123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw" in telegram.sensitive_strings()
    assert "sendMessage" not in telegram.sensitive_strings()

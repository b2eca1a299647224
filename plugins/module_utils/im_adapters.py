# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One small adapter per IM platform: render a notification, sign the request, classify the answer.

Public API (the im_notify module and callback use it): ``Notification``, ``Target``, ``Outcome``,
``adapter_for(platform)``, ``PLATFORMS``, ``truncate_utf8``, ``encode_body``, ``redact_url``.
Nothing here does I/O; ``im_delivery`` sends.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import math
import re

import time
from urllib.parse import quote_plus, urlsplit, parse_qsl

# Masking lives in redaction; MASK, redact_url and scrub stay importable from here (public API).
from ansible_collections.fleetops.health.plugins.module_utils.redaction import (  # noqa: F401  pylint: disable=unused-import
    MASK,
    _is_credential_name,
    redact_url,
    scrub,
)

SEVERITIES = ("info", "warning", "critical", "resolved")
FORMATS = ("text", "markdown")
# The longest wait a platform may ask for that we take as given; beyond it the value is capped (and the
# sender then spools instead of waiting, as it exceeds any sane retry_max_delay).
MAX_RETRY_AFTER = 86400.0
ELLIPSIS = u"\u2026"
_SEVERITY_LABEL = {"info": "INFO", "warning": "WARNING", "critical": "CRITICAL", "resolved": "RESOLVED"}


class ConfigError(ValueError):
    """A bad option; the message starts with the option's name and says how to fix it."""


class Notification(object):
    """What to say, independent of the platform."""

    def __init__(self, message, title=None, format="text", severity="info", mentions=None, chat_id=None):
        if format not in FORMATS:
            raise ConfigError("format: must be one of %s, got %r" % (", ".join(FORMATS), format))
        if severity not in SEVERITIES:
            raise ConfigError("severity: must be one of %s, got %r" % (", ".join(SEVERITIES), severity))
        mentions = mentions or {}
        self.message = message or ""
        self.title = title or ""
        self.format = format
        self.severity = severity
        self.mention_all = bool(mentions.get("all"))
        self.mention_mobiles = [str(m) for m in (mentions.get("mobiles") or [])]
        self.mention_user_ids = [str(u) for u in (mentions.get("user_ids") or [])]
        self.chat_id = chat_id

    @property
    def label(self):
        return _SEVERITY_LABEL[self.severity]

    def heading(self):
        """``[CRITICAL] title`` - the severity is always spelled out, colour is only an extra."""
        return "[%s] %s" % (self.label, self.title) if self.title else "[%s]" % self.label


class Target(object):
    """Where to send: the platform, the full URL (a secret) and the signing secret.

    ``identity`` and ``label`` are what the spool and the results keep: a fingerprint and a redacted URL.
    """

    def __init__(self, platform, url, secret=None, chat_id=None):
        scheme = urlsplit(url or "").scheme.lower()
        if scheme not in ("http", "https"):
            # Never echo the URL: it carries the token.
            raise ConfigError("url: must be an http:// or https:// URL (got scheme %r)" % scheme)
        self.platform = platform
        self.url = url
        self.secret = secret
        self.chat_id = chat_id

    @property
    def identity(self):
        digest = hashlib.sha256(("%s\n%s\n%s" % (self.platform, self.url, self.chat_id or "")).encode("utf-8"))
        return digest.hexdigest()[:16]

    @property
    def label(self):
        return "%s %s" % (self.platform, redact_url(self.url))

    def sensitive_strings(self):
        """The secret, the URL and each URL part that could be a credential, longest first."""
        found = set()
        if self.secret:
            found.add(self.secret)
        parts = urlsplit(self.url)
        found.add(self.url)
        if parts.password:
            found.add(parts.password)
        found.update(seg for seg in parts.path.split("/") if _looks_like_credential(seg, 8))
        for name, value in parse_qsl(parts.query):
            # A value under a credential name is secret however plain it looks (token=sekritpw).
            if _looks_like_credential(value, 6) or (_is_credential_name(name) and len(value) >= 4):
                found.add(value)
        return sorted(found, key=len, reverse=True)


def _looks_like_credential(part, min_length):
    """Tokens, keys and ids mix in digits; plain words such as ``services`` or ``sendMessage`` stay readable."""
    return len(part) >= 20 or (len(part) >= min_length and any(c.isdigit() for c in part))


def truncate_utf8(text, max_bytes):
    """Cut ``text`` to at most ``max_bytes`` UTF-8 bytes at a character boundary, ending with an ellipsis.

    Returns ``(text, truncated)``.
    """
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return text, False
    room = max(0, max_bytes - len(ELLIPSIS.encode("utf-8")))
    # errors="ignore" drops the partial multi-byte character the byte cut may have left at the end.
    return raw[:room].decode("utf-8", "ignore") + ELLIPSIS, True


def encode_body(payload):
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _hmac_sha256(key, msg):
    return hmac.new(key.encode("utf-8"), msg, hashlib.sha256).digest()


def _parse_json(body):
    try:
        value = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def parse_retry_after(value):
    """Seconds from a Retry-After header or a ``retry_after`` field: delta-seconds or an HTTP date.

    None when absent or unreadable (``"soon"``, a dict); never negative, never NaN and never above
    MAX_RETRY_AFTER, whatever the platform sends (``1e999`` included).
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = float(value) if not isinstance(value, int) or abs(value) < 10 ** 12 else float(MAX_RETRY_AFTER)
    else:
        text = str(value).strip()[:64]
        try:
            seconds = float(text)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(text)
                seconds = when.timestamp() - time.time()
            except (TypeError, ValueError, IndexError, OverflowError):
                return None
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


class Outcome(object):
    """How a platform answered: delivered, retryable (maybe with retry_after seconds) or permanent."""

    DELIVERED = "delivered"
    RETRYABLE = "retryable"
    PERMANENT = "permanent"

    def __init__(self, kind, status=None, message="", hint=None, retry_after=None, http_status=None, final=False):
        self.kind = kind
        #: a retryable outcome that retrying cannot fix (an internal error): undelivered at once, then spooled
        self.final = final
        self.status = status
        self.message = message
        self.hint = hint
        self.retry_after = retry_after
        self.http_status = http_status

    def __repr__(self):
        return "Outcome(%s, status=%r, message=%r)" % (self.kind, self.status, self.message)

    def describe(self):
        text = self.message or "no message"
        if self.status is not None:
            text += " (status %s)" % self.status
        if self.hint:
            text += "; hint: %s" % self.hint
        return text


class IMAdapter(object):
    """The interface. Subclasses set the class attributes and override the three hooks they need."""

    platform = None
    #: bytes of the main text field, per format (``None``: no limit)
    content_limits = {"text": None, "markdown": None}
    #: bytes of the whole JSON body (``None``: no limit)
    body_limit = None
    can_sign = False
    mention_kinds = ()  # subset of ("all", "mobiles", "user_ids")
    #: codes that mean "slow down" although the HTTP status is 200
    rate_limit_codes = ()
    #: code -> hint for the codes that cannot succeed on retry
    permanent_hints = {}
    http_hints = {
        400: "the platform rejected the payload; check format and message",
        401: "the credential in url or secret was refused",
        403: "the credential in url or secret was refused, or the sender is not allowed",
        404: "the webhook does not exist (revoked, or a typo in url)",
    }

    def validate(self, target, notification, sign):
        """Raise ConfigError for inputs this platform cannot use; return warnings for ignored ones."""
        if (target.secret or sign) and not self.can_sign:
            name = "secret" if target.secret else "sign"
            raise ConfigError("%s: %s messages are not signed; remove %s" % (name, self.platform, name))
        if sign and not target.secret:
            raise ConfigError("secret: required because sign is true for %s" % self.platform)
        warnings = []
        kinds = self.mention_kinds_for(notification.format)
        for kind, present in (("all", notification.mention_all), ("mobiles", notification.mention_mobiles),
                              ("user_ids", notification.mention_user_ids)):
            if present and kind not in kinds:
                warnings.append("mentions.%s: %s cannot mention by %s; ignored" % (kind, self.platform, kind))
        return warnings

    def mention_kinds_for(self, message_format):
        return self.mention_kinds

    # --- rendering ---------------------------------------------------------------------------------
    def render(self, notification):
        """Return ``(payload, truncated)`` for ``notification``, within the platform's limits."""
        content = self.content(notification)
        limit = self.content_limits.get(notification.format)
        truncated = False
        if limit:
            content, truncated = truncate_utf8(content, limit)
        payload = self.payload(notification, content)
        if self.body_limit and len(encode_body(payload)) > self.body_limit:
            # JSON escaping makes the body larger than the content by a varying amount: search for the
            # longest content whose body fits.
            fits, low, high = self.payload(notification, ""), 0, len(content.encode("utf-8"))
            while low < high:
                middle = (low + high + 1) // 2
                candidate = self.payload(notification, truncate_utf8(content, middle)[0])
                if len(encode_body(candidate)) <= self.body_limit:
                    fits, low = candidate, middle
                else:
                    high = middle - 1
            payload, truncated = fits, True
        return payload, truncated

    def content(self, notification):
        """The text of the main field, with the severity and mentions written the platform's way."""
        if notification.format == "markdown":
            return "**%s**\n\n%s" % (notification.heading(), notification.message)
        return "%s\n%s" % (notification.heading(), notification.message)

    def payload(self, notification, content):
        raise NotImplementedError

    # --- signing -----------------------------------------------------------------------------------
    def prepare(self, target, payload, now):
        """Return ``(url, body_bytes, headers)``, signed with a timestamp taken from ``now`` (seconds)."""
        return target.url, encode_body(payload), {"Content-Type": "application/json; charset=utf-8"}

    # --- answers -----------------------------------------------------------------------------------
    def classify(self, http_status, headers, body):
        """Map an HTTP answer to an Outcome. The base handles the HTTP layer; subclasses read bodies."""
        retry_after = parse_retry_after(_header(headers, "Retry-After"))
        text = body.decode("utf-8", "replace").strip()[:300]
        if http_status == 429 or http_status >= 500 or http_status == 408:
            return Outcome(Outcome.RETRYABLE, http_status, text or "HTTP %d" % http_status,
                           retry_after=retry_after, http_status=http_status)
        if 200 <= http_status < 300:
            return self.classify_success_status(http_status, body)
        return Outcome(Outcome.PERMANENT, http_status, text or "HTTP %d" % http_status,
                       hint=self.http_hints.get(http_status), http_status=http_status)

    def classify_success_status(self, http_status, body):
        return Outcome(Outcome.DELIVERED, http_status, "ok", http_status=http_status)

    def classify_code(self, code, message, http_status, retry_after=None):
        """For platforms that answer 200 with a code in the body: 0 is success and nothing else."""
        if code == 0:
            return Outcome(Outcome.DELIVERED, 0, message, http_status=http_status)
        if code in self.rate_limit_codes:
            return Outcome(Outcome.RETRYABLE, code, message, retry_after=retry_after, http_status=http_status)
        return Outcome(Outcome.PERMANENT, code, message, hint=self.hint_for(code, message), http_status=http_status)

    def hint_for(self, code, message):
        return self.permanent_hints.get(code)


def _header(headers, name):
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return value
    return None


class ErrcodeAdapter(IMAdapter):
    """WeCom and DingTalk answer HTTP 200 with ``{"errcode": N, "errmsg": "..."}``."""

    def classify_success_status(self, http_status, body):
        answer = _parse_json(body)
        if answer is None or "errcode" not in answer:
            return Outcome(Outcome.PERMANENT, http_status, "unexpected answer without errcode",
                           hint="url does not point at a %s robot webhook" % self.platform, http_status=http_status)
        return self.classify_code(answer.get("errcode"), answer.get("errmsg", ""), http_status)


class WeComAdapter(ErrcodeAdapter):
    platform = "wecom"
    content_limits = {"text": 2048, "markdown": 4096}
    mention_kinds = ("all", "mobiles", "user_ids")
    rate_limit_codes = (45009,)
    permanent_hints = {
        93000: "invalid webhook: check the key= part of url (the robot may have been removed)",
        40008: "invalid message type; this is a bug in the payload, please report it",
    }
    colors = {"info": "comment", "warning": "warning", "critical": "warning", "resolved": "info"}

    def mention_kinds_for(self, message_format):
        # WeCom markdown mentions only by <@userid>; mobiles work in text messages alone.
        return ("all", "user_ids") if message_format == "markdown" else self.mention_kinds

    def content(self, notification):
        if notification.format == "markdown":
            # WeCom markdown has no mention list: mentions are written inline as <@userid>.
            mentions = ["<@%s>" % u for u in notification.mention_user_ids]
            if notification.mention_all:
                mentions.append("<@all>")
            head = '## <font color="%s">%s</font>' % (self.colors[notification.severity], notification.heading())
            return "\n".join([head, notification.message] + ([" ".join(mentions)] if mentions else []))
        return super().content(notification)

    def payload(self, notification, content):
        if notification.format == "markdown":
            return {"msgtype": "markdown", "markdown": {"content": content}}
        text = {"content": content}
        users = list(notification.mention_user_ids) + (["@all"] if notification.mention_all else [])
        if users:
            text["mentioned_list"] = users
        if notification.mention_mobiles:
            text["mentioned_mobile_list"] = list(notification.mention_mobiles)
        return {"msgtype": "text", "text": text}


class DingTalkAdapter(ErrcodeAdapter):
    platform = "dingtalk"
    # DingTalk documents no byte limit in the contract; 20000 bytes is its robot's published content cap.
    content_limits = {"text": 20000, "markdown": 20000}
    can_sign = True
    mention_kinds = ("all", "mobiles", "user_ids")
    rate_limit_codes = (130101,)
    permanent_hints = {
        300001: "invalid token: check the access_token= part of url",
    }
    colors = {"info": "#808080", "warning": "#FF9900", "critical": "#FF0000", "resolved": "#008000"}

    def validate(self, target, notification, sign):
        warnings = super().validate(target, notification, sign)
        if target.secret and not target.secret.startswith("SEC"):
            warnings.append("secret: DingTalk signing secrets start with SEC; check that it is the robot's "
                            "signing (加签) secret and not the access_token")
        return warnings

    def content(self, notification):
        # DingTalk only notifies the people whose @mobile or @userid also appears in the text.
        tags = " ".join(["@%s" % m for m in notification.mention_mobiles] + ["@%s" % u for u in notification.mention_user_ids])
        if notification.format == "markdown":
            head = '### <font color="%s">%s</font>' % (self.colors[notification.severity], notification.heading())
            body = "%s\n\n%s" % (head, notification.message)
        else:
            body = super().content(notification)
        return "%s\n%s" % (body, tags) if tags else body

    def payload(self, notification, content):
        at = {"atMobiles": list(notification.mention_mobiles), "atUserIds": list(notification.mention_user_ids),
              "isAtAll": notification.mention_all}
        if notification.format == "markdown":
            return {"msgtype": "markdown", "markdown": {"title": notification.heading(), "text": content}, "at": at}
        return {"msgtype": "text", "text": {"content": content}, "at": at}

    def prepare(self, target, payload, now):
        url, body, headers = super().prepare(target, payload, now)
        if target.secret:
            timestamp = int(now * 1000)
            string_to_sign = "%d\n%s" % (timestamp, target.secret)
            sign = quote_plus(base64.b64encode(_hmac_sha256(target.secret, string_to_sign.encode("utf-8"))))
            url = "%s%stimestamp=%d&sign=%s" % (url, "&" if "?" in url else "?", timestamp, sign)
        return url, body, headers

    def hint_for(self, code, message):
        if code != 310000:
            return super().hint_for(code, message)
        lowered = (message or "").lower()
        if "timestamp" in lowered:
            return "the timestamp was refused: this host's clock is off by more than an hour; fix NTP (timedatectl)"
        if "keyword" in lowered:
            return "the robot's keyword setting: put one of its keywords in title or message"
        if "ip" in lowered.split() or "whitelist" in lowered:
            return "this host's public IP is not in the robot's IP whitelist"
        return ("signature refused: secret must be this robot's SEC... signing (加签) secret, "
                "and the host clock must be within an hour of DingTalk's")


class FeishuAdapter(IMAdapter):
    platform = "feishu"
    # 20 KB body, less room for the timestamp and sign that prepare() adds.
    body_limit = 20 * 1024 - 128
    can_sign = True
    mention_kinds = ("all", "user_ids")
    rate_limit_codes = (9499,)
    permanent_hints = {
        19021: "signature or timestamp refused: check secret, and that this host's clock is within an hour (NTP)",
        19024: "the bot's keyword setting: put one of its keywords in title or message",
    }
    templates = {"info": "blue", "warning": "orange", "critical": "red", "resolved": "green"}

    def content(self, notification):
        tags = ['<at user_id="%s"></at>' % u for u in notification.mention_user_ids]
        if notification.mention_all:
            tags.append('<at user_id="all"></at>')
        body = notification.message if notification.format == "markdown" else super().content(notification)
        return "%s\n%s" % (body, " ".join(tags)) if tags else body

    def payload(self, notification, content):
        if notification.format == "markdown":
            return {"msg_type": "interactive", "card": {
                "header": {"title": {"tag": "plain_text", "content": notification.heading()},
                           "template": self.templates[notification.severity]},
                "elements": [{"tag": "markdown", "content": content}]}}
        return {"msg_type": "text", "content": {"text": content}}

    def prepare(self, target, payload, now):
        if target.secret:
            timestamp = str(int(now))
            string_to_sign = "%s\n%s" % (timestamp, target.secret)
            # Feishu's quirk: the string to sign is the HMAC key and the message is empty.
            sign = base64.b64encode(_hmac_sha256(string_to_sign, b"")).decode("ascii")
            signed = {"timestamp": timestamp, "sign": sign}
            signed.update(payload)
            payload = signed
        return super().prepare(target, payload, now)

    def classify_success_status(self, http_status, body):
        answer = _parse_json(body)
        if answer is None:
            return Outcome(Outcome.PERMANENT, http_status, "unexpected answer that is not JSON",
                           hint="url does not point at a Feishu/Lark bot webhook", http_status=http_status)
        if "StatusCode" in answer:  # older bots
            return self.classify_code(answer.get("StatusCode"), answer.get("StatusMessage", ""), http_status)
        return self.classify_code(answer.get("code"), answer.get("msg", ""), http_status)


class LarkAdapter(FeishuAdapter):
    platform = "lark"


class SlackAdapter(IMAdapter):
    platform = "slack"
    # A section block's text takes at most 3000 characters; bytes are a safe upper bound for characters.
    content_limits = {"text": 3000, "markdown": 3000}
    mention_kinds = ("all", "user_ids")
    emoji = {"info": ":information_source:", "warning": ":warning:", "critical": ":red_circle:",
             "resolved": ":white_check_mark:"}
    http_hints = dict(IMAdapter.http_hints)
    http_hints.update({
        400: "invalid_payload: Slack could not read the message; check format and message",
        403: "action_prohibited: a workspace admin restricts this webhook",
        404: "no_service or channel_not_found: the webhook was removed or its channel deleted; check url",
        410: "channel_is_archived: unarchive the channel or create a new webhook",
    })

    def content(self, notification):
        tags = ["<@%s>" % u for u in notification.mention_user_ids]
        if notification.mention_all:
            tags.append("<!channel>")
        return "%s\n%s" % (notification.message, " ".join(tags)) if tags else notification.message

    def payload(self, notification, content):
        heading = "%s %s" % (self.emoji[notification.severity], notification.heading())
        return {"text": "%s\n%s" % (heading, content), "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "*%s*" % heading}},
            {"type": "section", "text": {"type": "mrkdwn" if notification.format == "markdown" else "plain_text",
                                         "text": content or " "}},
        ]}

    def classify_success_status(self, http_status, body):
        text = body.decode("utf-8", "replace").strip()
        if text == "ok":
            return Outcome(Outcome.DELIVERED, http_status, "ok", http_status=http_status)
        return Outcome(Outcome.PERMANENT, http_status, text[:300] or "empty answer",
                       hint="url does not point at a Slack incoming webhook", http_status=http_status)


class TeamsAdapter(IMAdapter):
    platform = "teams"
    body_limit = 28 * 1024  # Teams refuses messages above about 28 KB
    mention_kinds = ("user_ids",)
    colors = {"info": "default", "warning": "warning", "critical": "attention", "resolved": "good"}

    def content(self, notification):
        tags = ["<at>%s</at>" % u for u in notification.mention_user_ids]
        return "%s\n\n%s" % (notification.message, " ".join(tags)) if tags else notification.message

    def payload(self, notification, content):
        card = {"type": "AdaptiveCard", "version": "1.4", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "body": [
                    {"type": "TextBlock", "text": notification.heading(), "weight": "bolder", "size": "medium",
                     "color": self.colors[notification.severity], "wrap": True},
                    {"type": "TextBlock", "text": content, "wrap": True},
                ]}
        if notification.mention_user_ids:
            card["msteams"] = {"entities": [{"type": "mention", "text": "<at>%s</at>" % u, "mentioned": {"id": u, "name": u}}
                                            for u in notification.mention_user_ids]}
        return {"type": "message", "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}]}


class TelegramAdapter(IMAdapter):
    platform = "telegram"
    # 4096 characters after entity parsing; bytes are a safe upper bound.
    content_limits = {"text": 4096, "markdown": 4096}
    mention_kinds = ("user_ids",)
    http_hints = dict(IMAdapter.http_hints)
    http_hints.update({
        400: "Telegram refused the message: check chat_id, and MarkdownV2 escaping when format is markdown",
        401: "Unauthorized: the bot token in url is wrong",
        403: "the bot was blocked or removed from the chat",
        404: "Not Found: url must be https://api.telegram.org/bot<TOKEN>/sendMessage",
    })
    _markdown_v2_special = re.compile(r"([_*\[\]()~`>#+\-=|{}.!\\])")

    def validate(self, target, notification, sign):
        if not notification.chat_id:
            raise ConfigError("chat_id: required for telegram (a numeric id or @channelname)")
        return super().validate(target, notification, sign)

    def content(self, notification):
        tags = " ".join("@%s" % u.lstrip("@") for u in notification.mention_user_ids)
        if notification.format == "markdown":
            # The heading is ours, so escape it; the message is the user's MarkdownV2.
            text = "*%s*\n%s" % (self._markdown_v2_special.sub(r"\\\1", notification.heading()), notification.message)
            tags = self._markdown_v2_special.sub(r"\\\1", tags)
        else:
            text = super().content(notification)
        return "%s\n%s" % (text, tags) if tags else text

    def payload(self, notification, content):
        payload = {"chat_id": notification.chat_id, "text": content}
        if notification.format == "markdown":
            payload["parse_mode"] = "MarkdownV2"
        return payload

    def classify(self, http_status, headers, body):
        answer = _parse_json(body) or {}
        if http_status == 429:
            # parameters may be anything a broken proxy sends (5, "x", null): read it defensively.
            parameters = answer.get("parameters")
            retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
            retry_after = parse_retry_after(retry_after)
            if retry_after is None:
                retry_after = parse_retry_after(_header(headers, "Retry-After"))
            return Outcome(Outcome.RETRYABLE, 429, str(answer.get("description", "Too Many Requests"))[:300],
                           retry_after=retry_after, http_status=429)
        outcome = super().classify(http_status, headers, body)
        if outcome.kind != Outcome.RETRYABLE and answer:
            outcome.message = answer.get("description", outcome.message)
            outcome.status = answer.get("error_code", http_status)
        return outcome

    def classify_success_status(self, http_status, body):
        answer = _parse_json(body) or {}
        if answer.get("ok") is True:
            return Outcome(Outcome.DELIVERED, http_status, "ok", http_status=http_status)
        return Outcome(Outcome.PERMANENT, answer.get("error_code", http_status), answer.get("description", "ok is not true"),
                       http_status=http_status)


class WebhookAdapter(IMAdapter):
    platform = "webhook"
    can_sign = True
    mention_kinds = ("all", "mobiles", "user_ids")
    signature_header = "X-Signature-256"

    _header_name = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

    def __init__(self, signature_header=None):
        if signature_header:
            if not self._header_name.match(signature_header):
                # CR/LF would split the request's headers: a configuration error, never network trouble.
                raise ConfigError("signature_header: %r is not an HTTP header name; use letters, digits and - "
                                  "only, without spaces or line breaks (e.g. X-Signature-256)" % (signature_header,))
            self.signature_header = signature_header

    def content(self, notification):
        return notification.message

    def payload(self, notification, content):
        return {"title": notification.title, "message": content, "severity": notification.severity,
                "format": notification.format,
                "mentions": {"all": notification.mention_all, "mobiles": notification.mention_mobiles,
                             "user_ids": notification.mention_user_ids}}

    def prepare(self, target, payload, now):
        url, body, headers = super().prepare(target, payload, now)
        if target.secret:
            digest = hmac.new(target.secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
            headers[self.signature_header] = "sha256=" + digest
        return url, body, headers


_ADAPTERS = {cls.platform: cls for cls in (WeComAdapter, DingTalkAdapter, FeishuAdapter, LarkAdapter, SlackAdapter,
                                           TeamsAdapter, TelegramAdapter, WebhookAdapter)}
PLATFORMS = tuple(sorted(_ADAPTERS))


def adapter_for(platform, signature_header=None):
    if platform not in _ADAPTERS:
        raise ConfigError("platform: must be one of %s, got %r" % (", ".join(PLATFORMS), platform))
    if platform == "webhook":
        return WebhookAdapter(signature_header)
    return _ADAPTERS[platform]()

# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Loopback HTTP servers that implement each IM platform's webhook contract (shared/contracts/im-platforms.md).

They check tokens and signatures the way the platforms do (stale timestamps included), enforce the
size limits, answer the platforms' real error codes on demand, and can go down and come back.

Use from tests (unit, integration, e2e on lab hosts)::

    from ansible_collections.fleetops.health.tests.unit.im_receivers import IMReceiver

    with IMReceiver("dingtalk", secret="SECabc") as rx:     # host="0.0.0.0" for lab hosts
        ... post to rx.url (or rx.url_for("10.88.0.1") from a lab host) ...
        rx.fail_next("rate_limit", "rate_limit")             # the next two requests get 130101
        rx.go_down(); rx.come_back()                          # same port
        assert rx.messages[-1]["text"]["content"] == ...

Or standalone: ``python tests/unit/im_receivers.py wecom --host 0.0.0.0 --port 18080`` prints the URL
and one line of JSON per accepted message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn
from urllib.parse import parse_qs, urlsplit

PLATFORMS = ("wecom", "dingtalk", "feishu", "lark", "slack", "teams", "telegram", "webhook")


def _json(status, document, headers=None):
    return status, dict(headers or {}, **{"Content-Type": "application/json; charset=utf-8"}), \
        json.dumps(document).encode("utf-8")


def _text(status, text, headers=None):
    return status, dict(headers or {}, **{"Content-Type": "text/plain; charset=utf-8"}), text.encode("utf-8")


def canned_answers(platform, retry_after):
    """The platform's own error answers, by a short name tests can ask for."""
    def errcode(code, msg):
        return _json(200, {"errcode": code, "errmsg": msg})

    def feishu(code, msg):
        return _json(200, {"code": code, "msg": msg, "data": {}})

    common = {"server_error": _text(502, "Bad Gateway")}
    per_platform = {
        "wecom": {
            "rate_limit": errcode(45009, "api freq out of limit"),
            "bad_key": errcode(93000, "invalid webhook url"),
            "bad_msgtype": errcode(40008, "invalid message type"),
        },
        "dingtalk": {
            "rate_limit": errcode(130101, "send too fast, exceed 20 times per minute"),
            "bad_sign": errcode(310000, "sign not match"),
            "stale_timestamp": errcode(310000, "invalid timestamp"),
            "keywords": errcode(310000, "keywords not in content"),
            "bad_token": errcode(300001, "token is not exist"),
        },
        "feishu": {
            "rate_limit": feishu(9499, "too many request"),
            "bad_sign": feishu(19021, "sign match fail or timestamp is not within one hour from current time"),
            "keywords": feishu(19024, "Key Words Not Found"),
        },
        "slack": {
            "rate_limit": _text(429, "rate_limited", {"Retry-After": str(retry_after)}),
            "invalid_payload": _text(400, "invalid_payload"),
            "action_prohibited": _text(403, "action_prohibited"),
            "no_service": _text(404, "no_service"),
            "channel_is_archived": _text(410, "channel_is_archived"),
        },
        "teams": {
            "rate_limit": _text(429, "", {"Retry-After": str(retry_after)}),
            "bad_request": _json(400, {"error": {"code": "InvalidRequestContent", "message": "bad card"}}),
            "unauthorized": _json(401, {"error": {"code": "DirectApiAuthorizationRequired", "message": "bad sig"}}),
        },
        "telegram": {
            "rate_limit": _json(429, {"ok": False, "error_code": 429,
                                      "description": "Too Many Requests: retry after %d" % retry_after,
                                      "parameters": {"retry_after": retry_after}}),
            "unauthorized": _json(401, {"ok": False, "error_code": 401, "description": "Unauthorized"}),
            "chat_not_found": _json(400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}),
        },
        "webhook": {
            "rate_limit": _text(429, "slow down", {"Retry-After": str(retry_after)}),
            "bad_signature": _text(401, "bad signature"),
        },
    }
    per_platform["lark"] = per_platform["feishu"]
    answers = dict(common)
    answers.update(per_platform[platform])
    return answers


class _ThreadingServer(ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class IMReceiver(object):
    """One platform's webhook endpoint on ``host``:``port`` (0 picks a free port, kept across restarts)."""

    def __init__(self, platform, host="127.0.0.1", port=0, secret=None, token=None, clock=time.time,
                 max_skew=3600, retry_after=1, signature_header="X-Signature-256"):
        if platform not in PLATFORMS:
            raise ValueError("platform must be one of %s" % ", ".join(PLATFORMS))
        self.platform = platform
        self.host = host
        self.port = port
        self.secret = secret
        self.token = token or "tok%s" % uuid.uuid4().hex
        self.clock = clock
        self.max_skew = max_skew
        self.retry_after = retry_after
        self.signature_header = signature_header
        self.messages = []     # accepted JSON bodies, in arrival order
        self.requests = []     # every request: dict(path, query, headers, body, status)
        self.rejections = []   # (answer name or code, reason) for refused requests
        self._script = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._server = None
        self._thread = None

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self):
        self._server = _ThreadingServer((self.host, self.port), self._handler_class())
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None

    go_down = stop

    def come_back(self):
        """Listen again on the same port, keeping what was received."""
        return self.start()

    @property
    def running(self):
        return self._server is not None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    # --- addresses ---------------------------------------------------------------------------------
    @property
    def url(self):
        return self.url_for("127.0.0.1" if self.host in ("0.0.0.0", "") else self.host)

    def url_for(self, hostname):
        """The webhook URL as seen from a client that reaches this machine as ``hostname``."""
        base = "http://%s:%d" % (hostname, self.port)
        return base + {
            "wecom": "/cgi-bin/webhook/send?key=%s",
            "dingtalk": "/robot/send?access_token=%s",
            "feishu": "/open-apis/bot/v2/hook/%s",
            "lark": "/open-apis/bot/v2/hook/%s",
            "slack": "/services/T0FLEETOPS/B0FLEETOPS/%s",
            "teams": "/workflows/0f1e2d3c/triggers/manual/paths/invoke?api-version=2016-06-01&sv=1.0&sig=%s",
            "telegram": "/bot%s/sendMessage",
            "webhook": "/hooks/%s",
        }[self.platform] % self.token

    # --- scripting ---------------------------------------------------------------------------------
    def fail_next(self, *names):
        """Answer the next requests with these canned errors (see ``canned_answers``), then normally.

        ``"slow:<seconds>"`` delays the answer instead, to provoke client timeouts. A tuple
        ``(status, headers, body_bytes)`` is sent as it is (answers no platform should send).
        """
        known = canned_answers(self.platform, self.retry_after)
        for name in names:
            if isinstance(name, tuple):
                continue  # a raw (status, headers, body) answer, for hostile-answer tests
            if name not in known and not name.startswith("slow:"):
                raise ValueError("%s has no canned answer %r; known: %s" % (self.platform, name, ", ".join(sorted(known))))
        with self._lock:
            self._script.extend(names)

    def wait_for(self, count, timeout=10.0):
        """Block until ``count`` messages were accepted; return them."""
        deadline = time.time() + timeout
        with self._arrived:
            while len(self.messages) < count and time.time() < deadline:
                self._arrived.wait(max(0.01, deadline - time.time()))
            return list(self.messages)

    def reset(self):
        with self._lock:
            del self.messages[:], self.requests[:], self.rejections[:], self._script[:]

    # --- the contract ------------------------------------------------------------------------------
    def _handler_class(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status, headers, answer = receiver.answer(self.path, dict(self.headers.items()), body)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        return Handler

    def answer(self, path, headers, body):
        parts = urlsplit(path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        record = {"path": parts.path, "query": query, "headers": headers, "body": body}
        with self._lock:
            self.requests.append(record)
            scripted = self._script.pop(0) if self._script else None
        if isinstance(scripted, tuple):
            self._reject(record, "raw", "scripted", scripted[0])
            return scripted
        if scripted and scripted.startswith("slow:"):
            time.sleep(float(scripted.split(":", 1)[1]))
            scripted = None
        if scripted:
            status, answer_headers, answer = canned_answers(self.platform, self.retry_after)[scripted]
            self._reject(record, scripted, "scripted", status)
            return status, answer_headers, answer
        refusal = self._check(parts.path, query, headers, body)
        if refusal:
            name, reason = refusal
            status, answer_headers, answer = self._refusal_answer(name, reason)
            self._reject(record, name, reason, status)
            return status, answer_headers, answer
        with self._arrived:
            record["status"] = "accepted"
            self.messages.append(json.loads(body.decode("utf-8")))
            self._arrived.notify_all()
        return self._success()

    def _reject(self, record, name, reason, status):
        with self._lock:
            record["status"] = status
            self.rejections.append((name, reason))

    def _success(self):
        return {
            "wecom": _json(200, {"errcode": 0, "errmsg": "ok"}),
            "dingtalk": _json(200, {"errcode": 0, "errmsg": "ok"}),
            "feishu": _json(200, {"code": 0, "msg": "success", "data": {}}),
            "lark": _json(200, {"code": 0, "msg": "success", "data": {}}),
            "slack": _text(200, "ok"),
            "teams": _text(202, ""),
            "telegram": _json(200, {"ok": True, "result": {"message_id": len(self.messages)}}),
            "webhook": _text(204, ""),
        }[self.platform]

    def _refusal_answer(self, name, reason):
        canned = canned_answers(self.platform, self.retry_after)
        if name in canned:
            status, headers, answer = canned[name]
            if self.platform in ("dingtalk", "wecom", "feishu", "lark"):
                document = json.loads(answer.decode("utf-8"))
                document["errmsg" if "errmsg" in document else "msg"] += " (%s)" % reason
                answer = json.dumps(document).encode("utf-8")
            return status, headers, answer
        # Payload errors the contract gives no code for (too long, bad JSON): WeCom and DingTalk answer
        # an errcode with HTTP 200, the others a 400, so the sender sees a permanent error either way.
        if self.platform in ("wecom", "dingtalk"):
            return _json(200, {"errcode": 40058, "errmsg": reason})
        if self.platform in ("feishu", "lark"):
            return _json(400, {"code": 9499, "msg": reason, "data": {}})
        if self.platform == "telegram":
            return _json(400, {"ok": False, "error_code": 400, "description": "Bad Request: " + reason})
        return _text(400, "invalid_payload" if self.platform == "slack" else reason)

    def _check(self, path, query, headers, body):
        """Return ``(answer name, reason)`` when the platform would refuse, else None."""
        try:
            document = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return "invalid_json", "body is not UTF-8 JSON"
        check = getattr(self, "_check_" + ("feishu" if self.platform == "lark" else self.platform))
        return check(path, query, headers, body, document)

    def _stale(self, timestamp_seconds):
        return abs(self.clock() - timestamp_seconds) > self.max_skew

    def _check_wecom(self, path, query, headers, body, document):
        if query.get("key") != self.token:
            return "bad_key", "key does not match"
        kind = document.get("msgtype")
        if kind not in ("text", "markdown"):
            return "bad_msgtype", "msgtype %r" % kind
        limit = 2048 if kind == "text" else 4096
        size = len(document[kind]["content"].encode("utf-8"))
        if size > limit:
            return "too_long", "%s content is %d bytes, more than %d" % (kind, size, limit)
        return None

    def _check_dingtalk(self, path, query, headers, body, document):
        if query.get("access_token") != self.token:
            return "bad_token", "access_token does not match"
        if self.secret:
            if "timestamp" not in query or "sign" not in query:
                return "bad_sign", "timestamp and sign missing"
            timestamp = query["timestamp"]
            if self._stale(int(timestamp) / 1000.0):
                return "stale_timestamp", "timestamp %s is more than an hour off" % timestamp
            string_to_sign = "%s\n%s" % (timestamp, self.secret)
            expected = base64.b64encode(hmac.new(self.secret.encode(), string_to_sign.encode(), hashlib.sha256).digest())
            # parse_qs already undid the URL encoding once, as DingTalk's server does.
            if not hmac.compare_digest(expected.decode(), query["sign"]):
                return "bad_sign", "sign not match"
        kind = document.get("msgtype")
        if kind not in ("text", "markdown"):
            return "bad_payload", "unsupported msgtype %r" % kind
        content = document["text"]["content"] if kind == "text" else document["markdown"]["text"]
        if len(content.encode("utf-8")) > 20000:
            return "too_long", "content is more than 20000 bytes"
        return None

    def _check_feishu(self, path, query, headers, body, document):
        if not path.endswith("/hook/" + self.token):
            return "bad_sign", "no such bot"
        if len(body) > 20 * 1024:
            return "too_long", "body is %d bytes, more than 20 KB" % len(body)
        if self.secret:
            timestamp, sign = document.get("timestamp"), document.get("sign")
            if not timestamp or not sign:
                return "bad_sign", "timestamp and sign missing"
            if self._stale(int(timestamp)):
                return "bad_sign", "timestamp %s is more than an hour off" % timestamp
            string_to_sign = "%s\n%s" % (timestamp, self.secret)
            expected = base64.b64encode(hmac.new(string_to_sign.encode(), b"", hashlib.sha256).digest()).decode()
            if not hmac.compare_digest(expected, sign):
                return "bad_sign", "sign match fail"
        if document.get("msg_type") not in ("text", "post", "interactive", "image", "share_chat"):
            return "bad_payload", "unknown msg_type"
        return None

    def _check_slack(self, path, query, headers, body, document):
        if not path.endswith("/" + self.token):
            return "no_service", "no such webhook"
        if not document.get("text") and not document.get("blocks"):
            return "invalid_payload", "neither text nor blocks"
        for block in document.get("blocks") or []:
            text = (block.get("text") or {}).get("text", "")
            if len(text) > 3000:
                return "invalid_payload", "a section block's text is more than 3000 characters"
        return None

    def _check_teams(self, path, query, headers, body, document):
        if query.get("sig") != self.token:
            return "unauthorized", "sig does not match"
        attachments = document.get("attachments") or []
        if document.get("type") != "message" or not attachments:
            return "bad_request", "not a message with attachments"
        if attachments[0].get("contentType") != "application/vnd.microsoft.card.adaptive":
            return "bad_request", "attachment is not an Adaptive Card"
        if len(body) > 28 * 1024:
            return "bad_request", "message is more than 28 KB"
        return None

    def _check_telegram(self, path, query, headers, body, document):
        if path != "/bot%s/sendMessage" % self.token:
            return "unauthorized", "bad bot token"
        if not document.get("chat_id"):
            return "chat_not_found", "chat_id missing"
        text = document.get("text") or ""
        if not text:
            return "chat_not_found", "message text is empty"
        if len(text) > 4096:
            return "too_long", "message is too long"
        return None

    def _check_webhook(self, path, query, headers, body, document):
        if path != "/hooks/" + self.token:
            return "bad_signature", "no such hook"
        if self.secret:
            sent = {k.lower(): v for k, v in headers.items()}.get(self.signature_header.lower(), "")
            expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(sent, expected):
                return "bad_signature", "signature does not match"
        return None


def _main():
    import argparse
    parser = argparse.ArgumentParser(description="Run one IM platform's contract receiver until interrupted.")
    parser.add_argument("platform", choices=PLATFORMS)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--secret")
    parser.add_argument("--token")
    args = parser.parse_args()
    receiver = IMReceiver(args.platform, host=args.host, port=args.port, secret=args.secret, token=args.token).start()
    print(receiver.url, flush=True)
    seen = 0
    try:
        while True:
            messages = receiver.wait_for(seen + 1, timeout=1.0)
            for message in messages[seen:]:
                print(json.dumps(message, ensure_ascii=False), flush=True)
            seen = len(messages)
    except KeyboardInterrupt:
        receiver.stop()


if __name__ == "__main__":
    _main()

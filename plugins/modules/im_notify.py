#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: im_notify
short_description: Send an alert to WeCom, DingTalk, Feishu/Lark, Slack, Teams, Telegram or a webhook
version_added: 0.1.0
description:
  - Posts one notification to an IM group robot or webhook, signed the platform's way, with retries and
    exponential backoff that honour C(Retry-After) and C(retry_after).
  - A platform that answers HTTP 200 with an error code in the body (WeCom, DingTalk, Feishu/Lark) is
    treated as a failure. Errors a retry cannot fix (bad signature, token or payload) fail at once with the
    platform's code, its message and a hint.
  - A message that is still undelivered after the retries is kept in an on-disk spool on the managed host
    and the task reports C(delivered=false), C(spooled=true) with a warning. A later run with
    O(flush_spool=true) sends the spool, oldest first, before its own message.
  - The spool keeps the platform, a fingerprint and a redacted form of the target, and the payload. It never
    keeps O(url) or O(secret); the flushing task supplies them again.
  - O(dedupe_key) with O(dedupe_window) damps alert storms. Content over the platform's limit is cut at a
    UTF-8 character boundary.
author:
  - fleetops.health contributors (@fleetops)
extends_documentation_fragment:
  - fleetops.health.attributes
attributes:
  check_mode:
    support: full
    details: Renders and signs the request and returns it with the URL and signatures masked; sends nothing and
      writes nothing (the spool directory is only checked).
  diff_mode:
    support: none
    details: A notification has no before and after to compare.
  platform:
    details: Any POSIX host with Python 3.8 or later; the request leaves from the host the task runs on.
options:
  platform:
    description: The kind of endpoint O(url) points at. V(lark) is Feishu's international edition.
    type: str
    required: true
    choices: [wecom, dingtalk, feishu, lark, slack, teams, telegram, webhook]
  url:
    description:
      - The full webhook URL, including its key or token, for example
        C(https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...). Any http(s) URL works, so on-prem proxies do.
      - Telegram takes C(https://api.telegram.org/bot<TOKEN>/sendMessage).
    type: str
    required: true
  secret:
    description:
      - The signing secret. DingTalk (C(SEC...), the robot's signing setting) and Feishu/Lark sign with a
        timestamp; V(webhook) adds an HMAC-SHA256 of the body in O(signature_header).
      - Not accepted for platforms that do not sign.
    type: str
  sign:
    description:
      - Whether the target requires signing. V(true) makes a missing O(secret) an error before anything is sent.
      - When unset, requests are signed exactly when O(secret) is given.
    type: bool
  signature_header:
    description:
      - The header that carries C(sha256=<hex>) for O(platform=webhook).
      - An HTTP header name (letters, digits and C(-)); spaces and line breaks fail the task.
    type: str
    default: X-Signature-256
  chat_id:
    description: The Telegram chat, a numeric id or C(@channelname). Required for O(platform=telegram).
    type: str
  title:
    description: A short heading, shown with the severity.
    type: str
  msg:
    description:
      - The body of the notification. Required unless O(flush_spool=true), which may run alone.
      - Named C(msg) like community.general's notification modules, because Ansible reserves C(message).
    type: str
  format:
    description: V(markdown) uses each platform's markdown flavour (Telegram's is MarkdownV2).
    type: str
    choices: [text, markdown]
    default: text
  severity:
    description:
      - Shown as a label and with the platform's emphasis (WeCom and DingTalk font colour, Feishu card header
        colour, Slack emoji, Teams card colour).
    type: str
    choices: [info, warning, critical, resolved]
    default: info
  mentions:
    description: Who to notify, where the platform supports it; unsupported kinds are ignored with a warning.
    type: dict
    suboptions:
      all:
        description: Mention everyone in the group.
        type: bool
        default: false
      mobiles:
        description: Mobile numbers (WeCom text messages, DingTalk).
        type: list
        elements: str
        default: []
      user_ids:
        description: Platform user ids (WeCom, DingTalk, Feishu open_id, Slack member id, Teams UPN, Telegram @username).
        type: list
        elements: str
        default: []
  timeout:
    description: Seconds to wait for each HTTP answer, above 0 and at most 600.
    type: float
    default: 10
  retries:
    description: How many times to retry a retryable failure (so at most O(retries) + 1 requests), 0 to 20.
    type: int
    default: 3
  retry_delay:
    description: The first backoff in seconds, 0 to 3600; it doubles with each retry.
    type: float
    default: 1
  retry_max_delay:
    description:
      - The longest wait between two attempts, 0 to 86400 seconds. When the platform asks for a longer one
        (Retry-After, Telegram's C(retry_after)), the module stops retrying and spools instead of blocking the play.
      - A platform's wait is read defensively; an unreadable one is ignored and an absurd one (C(1e999)) is
        treated as longer than this.
    type: float
    default: 60
  validate_certs:
    description: Verify the TLS certificate of O(url).
    type: bool
    default: true
  spool_dir:
    description:
      - The directory that holds the spool and the dedupe ledger on the managed host. It must be writable;
        that is checked before anything is sent. It is created (mode 0700) when missing.
      - A directory (or its C(queue)) that is a symlink, is owned by another user or is writable by group or
        others is refused. A spooled message that cannot be read is moved aside with a warning and never stops
        the others or the new message.
      - Only used when O(on_undelivered=spool), O(flush_spool=true) or O(dedupe_key) is set.
    type: path
    default: /var/lib/fleetops/im_spool
  on_undelivered:
    description:
      - What to do when retries run out. V(spool) keeps the message and reports success with a warning,
        so an outage of the IM platform does not fail the play. V(fail) fails the task and keeps nothing.
      - Errors a retry cannot fix fail the task in both cases.
    type: str
    choices: [spool, fail]
    default: spool
  flush_spool:
    description: Send this target's spooled messages, oldest first, before O(msg).
    type: bool
    default: false
  dedupe_key:
    description:
      - An identity for the alert, such as C(disk_full:db1:/var). Another message with the same key to the same
        target within O(dedupe_window) seconds is not sent; RV(suppressed) counts it, and the next message sent
        after the window says how many repeats were suppressed.
    type: str
  dedupe_window:
    description: Seconds during which repeats of O(dedupe_key) are suppressed, 0 to 2592000 (30 days).
    type: int
    default: 300
notes:
  - The HTTP client is Ansible's own C(open_url), so no extra Python library is needed on the managed host.
  - O(url) and O(secret) are C(no_log). Their token parts (path tokens, C(key=), C(token=), C(access_token=) and
    other credential-like query values, however short) are also masked in every message the module returns and
    in the spool, as are the C(timestamp) and C(sign) that signing adds.
  - Any error while sending (an unreadable answer, an internal error) leaves the message undelivered, so it is
    spooled with O(on_undelivered=spool) and reported in a warning.
seealso:
  - name: IM notification guide
    description: Platforms, limits, spool layout and the matching callback plugin.
    link: https://example.invalid/fleetops/health/blob/main/docs/im_notify.md
"""

EXAMPLES = r"""
- name: Tell the on-call WeCom group that a disk is nearly full
  fleetops.health.im_notify:
    platform: wecom
    url: "{{ wecom_webhook_url }}"
    title: "{{ inventory_hostname }}: disk /var 93%"
    msg: "Free space will run out in about 6 hours."
    severity: warning
    format: markdown
    mentions:
      mobiles: ["13800000000"]
    dedupe_key: "disk:{{ inventory_hostname }}:/var"
    dedupe_window: 1800

- name: DingTalk robot with the signing (加签) setting
  fleetops.health.im_notify:
    platform: dingtalk
    url: "{{ dingtalk_webhook_url }}"
    secret: "{{ dingtalk_secret }}"
    sign: true
    title: nginx restarted
    msg: nginx was down for 40 s and is healthy again.
    severity: resolved

- name: Send what an outage left in the spool, then nothing else
  fleetops.health.im_notify:
    platform: feishu
    url: "{{ feishu_webhook_url }}"
    secret: "{{ feishu_secret }}"
    flush_spool: true

- name: Telegram, failing the task instead of spooling
  fleetops.health.im_notify:
    platform: telegram
    url: "https://api.telegram.org/bot{{ telegram_token }}/sendMessage"
    chat_id: "@fleet_oncall"
    msg: backup job failed
    severity: critical
    on_undelivered: fail
"""

RETURN = r"""
delivered:
  description: Whether O(msg) was accepted by the platform.
  returned: always
  type: bool
  sample: true
spooled:
  description: Whether O(msg) was written to the spool because it could not be delivered.
  returned: always
  type: bool
  sample: false
suppressed:
  description:
    - How many repeats of O(dedupe_key) the current window has suppressed, this one included. 0 when the
      message was sent.
  returned: always
  type: int
  sample: 0
attempts:
  description: HTTP requests made for O(msg) (0 when suppressed or queued behind the spool).
  returned: always
  type: int
  sample: 1
platform:
  description: The platform.
  returned: always
  type: str
  sample: wecom
status:
  description:
    - The platform's own status of the last attempt, the C(errcode) or C(code) of the JSON answer, or the
      HTTP status for Slack, Teams and webhooks. Null when there was no answer.
  returned: always
  type: raw
  sample: 0
truncated:
  description: Whether the content was cut to the platform's limit.
  returned: always
  type: bool
  sample: false
flushed:
  description: Spooled messages delivered by O(flush_spool).
  returned: always
  type: int
  sample: 0
spool_remaining:
  description: Messages for this target still in the spool after the task.
  returned: always
  type: int
  sample: 0
target:
  description: The platform and the URL with its path and query masked.
  returned: always
  type: str
  sample: "wecom https://qyapi.weixin.qq.com/********"
request:
  description: In check mode, the request that would be sent, with the URL, signature and secrets masked.
  returned: check mode
  type: dict
  sample: {"url": "https://qyapi.weixin.qq.com/********", "headers": {"Content-Type": "application/json; charset=utf-8"},
           "body": {"msgtype": "text", "text": {"content": "[INFO] deploy done"}}}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.fleetops.health.plugins.module_utils.im_adapters import (
    PLATFORMS,
    ConfigError,
    Notification,
    Target,
)
from ansible_collections.fleetops.health.plugins.module_utils.im_delivery import DeliveryError, notifier_for
from ansible_collections.fleetops.health.plugins.module_utils.state_file import StateDirError
from ansible_collections.fleetops.health.plugins.module_utils.validation import OptionError, check_number

MAX_DEDUPE_WINDOW = 30 * 86400


def build_notifier(params, warnings, check_mode):
    """Validate the options and wire adapter, target, sender, spool and dedupe together.

    timeout, retries, retry_delay and retry_max_delay are checked by notifier_for, shared with the callback.
    """
    try:
        check_number(params["dedupe_window"], "dedupe_window", 0, MAX_DEDUPE_WINDOW, integer=True)
    except OptionError as exc:
        raise ConfigError(str(exc))
    if params["msg"] is None and not params["flush_spool"]:
        raise ConfigError("msg: required unless flush_spool is true")
    needs_spool = params["on_undelivered"] == "spool" or params["flush_spool"] or params["dedupe_key"]
    notifier = notifier_for(
        params["platform"], params["url"], params["secret"], params["chat_id"], params["signature_header"],
        params["timeout"], params["retries"], params["retry_delay"], params["retry_max_delay"],
        params["validate_certs"], params["spool_dir"] if needs_spool else None, params["on_undelivered"],
        create_spool=not check_mode)
    notification = None
    if params["msg"] is not None:
        notification = Notification(params["msg"], params["title"], params["format"], params["severity"],
                                    params["mentions"], params["chat_id"])
    # A flush-only call still validates the target (secret, chat_id) with an empty notification.
    warnings.extend(notifier.adapter.validate(notifier.target, notification or Notification("", chat_id=params["chat_id"]),
                                              params["sign"]))
    return notifier, notification


def main():
    module = AnsibleModule(
        argument_spec=dict(
            platform=dict(type="str", required=True, choices=list(PLATFORMS)),
            url=dict(type="str", required=True, no_log=True),
            secret=dict(type="str", no_log=True),
            sign=dict(type="bool"),
            signature_header=dict(type="str", default="X-Signature-256"),
            chat_id=dict(type="str"),
            title=dict(type="str"),
            msg=dict(type="str"),
            format=dict(type="str", choices=["text", "markdown"], default="text"),
            severity=dict(type="str", choices=["info", "warning", "critical", "resolved"], default="info"),
            mentions=dict(type="dict", options=dict(
                all=dict(type="bool", default=False),
                mobiles=dict(type="list", elements="str", default=[]),
                user_ids=dict(type="list", elements="str", default=[]),
            )),
            timeout=dict(type="float", default=10),
            retries=dict(type="int", default=3),
            retry_delay=dict(type="float", default=1),
            retry_max_delay=dict(type="float", default=60),
            validate_certs=dict(type="bool", default=True),
            spool_dir=dict(type="path", default="/var/lib/fleetops/im_spool"),
            on_undelivered=dict(type="str", choices=["spool", "fail"], default="spool"),
            flush_spool=dict(type="bool", default=False),
            dedupe_key=dict(type="str", no_log=False),
            dedupe_window=dict(type="int", default=300),
        ),
        required_if=[("platform", "telegram", ["chat_id"])],
        supports_check_mode=True,
    )
    params = module.params
    warnings = []
    try:
        target_secrets = Target(params["platform"], params["url"], params["secret"]).sensitive_strings()
    except ConfigError as exc:
        module.fail_json(msg="im_notify: %s" % exc)
    # The token parts of the URL are masked in everything Ansible prints, not only the whole URL.
    module.no_log_values.update(target_secrets)
    try:
        notifier, notification = build_notifier(params, warnings, module.check_mode)
        if module.check_mode:
            result = notifier.preview(notification, params["flush_spool"], params["dedupe_key"], params["dedupe_window"])
        else:
            result = notifier.run(notification, params["flush_spool"], params["dedupe_key"], params["dedupe_window"])
            result["changed"] = result["delivered"] or result["spooled"] or result["flushed"] > 0
    except (ConfigError, StateDirError, DeliveryError) as exc:
        for warning in warnings:
            module.warn(warning)
        module.fail_json(msg="im_notify: %s" % exc, **getattr(exc, "result", {}))
    for warning in warnings + notifier.warnings:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()

# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mask credentials in URLs and in any text that may quote one: the one place every module masks with.

Public API: ``MASK``, ``CREDENTIAL_NAMES``, ``mask_url``, ``url_secrets``, ``mask_text``, ``mask_data``,
``redact_url``, ``scrub``. Used by probe (results, errors, state), im_notify (results, spool), the fleet
report filter and the im_notify callback.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

MASK = "********"

# Query or form parameter names whose value is a credential. Compared in lower case; ``x-`` and
# ``_``/``-`` variants are folded by _is_credential_name.
CREDENTIAL_NAMES = frozenset((
    "token", "access_token", "refresh_token", "id_token", "auth_token", "private_token", "session_token",
    "key", "api_key", "apikey", "access_key", "secret_key", "client_secret", "secret",
    "password", "passwd", "pass", "pwd",
    "sig", "signature", "sign", "timestamp",
    "auth", "authorization", "credential", "credentials", "session", "sessionid", "jwt",
))

# scheme://userinfo@ : everything between // and the last @ before the host ends.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"<>]*@")
# name=value in a query string, a form body or a log line; the value ends at a separator or quote.
_NAMED_VALUE = re.compile(r"(?i)(?<![a-z0-9_-])((?:[a-z0-9]+[_-])*(?:%s))=([^&\s'\"<>;,)]+)" % "|".join(
    sorted((re.escape(name) for name in CREDENTIAL_NAMES), key=len, reverse=True)))


def _is_credential_name(name):
    folded = name.lower().replace("-", "_")
    if folded.startswith("x_"):
        folded = folded[2:]
    return folded in CREDENTIAL_NAMES or folded.endswith(("_token", "_key", "_secret", "_password"))


def mask_url(url):
    """``url`` with its userinfo and credential-like query values masked; the rest stays readable."""
    return mask_text(url)


def url_secrets(url, min_length=4):
    """The password (or token user) and credential-like query values of ``url``, for no_log.

    Values shorter than ``min_length`` are left out: masking ``a`` would mask every ``a`` in the output,
    and the structural masking of ``mask_text`` hides them in URLs anyway.
    """
    try:
        parts = urlsplit(str(url))
        found = set()
        if parts.password:
            found.add(parts.password)
        if parts.username and parts.password is None:
            found.add(parts.username)  # https://TOKEN@host: the user is the credential
        found.update(value for name, value in parse_qsl(parts.query, keep_blank_values=False)
                     if _is_credential_name(name))
    except (ValueError, TypeError):
        return set()
    return set(value for value in found if value and len(value) >= min_length)


def mask_text(text):
    """Mask every URL userinfo and every ``credential_name=value`` in ``text``."""
    text = "%s" % (text,)
    if "@" in text:
        text = _USERINFO.sub(lambda match: match.group(1) + MASK + "@", text)
    if "=" in text:
        text = _NAMED_VALUE.sub(lambda match: match.group(1) + "=" + MASK, text)
    return text


def mask_data(value):
    """A copy of a JSON-like structure with ``mask_text`` applied to every string, keys included."""
    if isinstance(value, dict):
        return dict((mask_data(key), mask_data(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return [mask_data(item) for item in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def redact_url(url):
    """``https://host:port/********``: the path and query of a webhook URL are its credential."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        port = None
    if port:
        host = "%s:%d" % (host, port)
    return "%s://%s/%s" % (parts.scheme, host, MASK)


def scrub(text, sensitive=()):
    """Replace every known sensitive string in ``text``, then mask what still looks like a credential."""
    text = "%s" % (text,)
    for value in sensitive:
        if value:
            text = text.replace(value, MASK)
    return mask_text(text)

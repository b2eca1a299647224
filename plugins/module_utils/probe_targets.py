# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validate probe targets and merge them with the shared defaults; every error names the target."""

from __future__ import annotations

import re

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError
from ansible.module_utils.six.moves.urllib.parse import urlsplit

# Per-target options. No spec defaults here: a value a target leaves unset must fall through to
# ``defaults`` first, and only then to BUILTIN_DEFAULTS.
PER_TARGET_SPEC = dict(
    method=dict(type="str"),
    headers=dict(type="dict"),
    body=dict(type="str"),
    expect_status=dict(type="list", elements="raw"),
    body_regex=dict(type="str"),
    timeout=dict(type="float"),
    retries=dict(type="int"),
    validate_certs=dict(type="bool"),
    ca_path=dict(type="path"),
    cert_min_days=dict(type="float"),
    follow_redirects=dict(type="bool"),
)

ENDPOINT_KINDS = ("url", "tcp", "tls")

TARGET_SPEC = dict(PER_TARGET_SPEC, name=dict(type="str"), **dict((kind, dict(type="str")) for kind in ENDPOINT_KINDS))

BUILTIN_DEFAULTS = dict(
    method="GET",
    headers={},
    body=None,
    expect_status=["200-399"],
    body_regex=None,
    timeout=5.0,
    retries=0,
    validate_certs=True,
    ca_path=None,
    cert_min_days=None,
    follow_redirects=True,
)

HTTP_ONLY_OPTIONS = ("method", "headers", "body", "expect_status", "body_regex", "follow_redirects")
CERT_OPTIONS = ("validate_certs", "ca_path", "cert_min_days")

# Header values under these names are credentials: the module hides them from its output.
SECRET_HEADER_NAMES = frozenset(("authorization", "proxy-authorization", "cookie", "x-api-key", "x-auth-token"))


class TargetError(ValueError):
    """A target (or the defaults) is invalid; the message names it and says what to fix."""


class ProbeTarget(object):
    """One validated endpoint with all of its options resolved."""

    __slots__ = ("name", "kind", "host", "port", "url", "scheme", "options", "status_ranges", "body_pattern")

    def __init__(self, name, kind, host, port, url, options):
        self.name = name
        self.kind = kind
        self.host = host
        self.port = port
        self.url = url
        self.scheme = urlsplit(url).scheme if url else None
        self.options = options
        self.status_ranges = parse_status_ranges(options["expect_status"], name)
        self.body_pattern = compile_body_regex(options["body_regex"], name)

    @property
    def endpoint(self):
        """What the target points at; a changed endpoint restarts its threshold counts."""
        return self.url if self.kind == "url" else "%s:%s:%d" % (self.kind, self.host, self.port)

    @property
    def uses_tls(self):
        return self.kind == "tls" or self.scheme == "https"


def _validate_against(spec, params, label):
    result = ArgumentSpecValidator(spec).validate(params)
    errors = result.errors.errors
    if errors:
        raise TargetError("%s: %s" % (label, "; ".join(
            ("unknown option " if isinstance(error, UnsupportedError) else "") + error.msg for error in errors)))
    return result.validated_parameters


def _target_label(index, raw):
    name = raw.get("name") if isinstance(raw, dict) else None
    return "target %r" % name if name else "targets[%d]" % index


def parse_status_ranges(items, name):
    """Turn ``[200, "300-399"]`` into ``[(200, 200), (300, 399)]``."""
    ranges = []
    for item in items:
        text = str(item).strip()
        match = re.match(r"^(\d{3})(?:\s*-\s*(\d{3}))?$", text)
        if not match:
            raise TargetError("target %r: expect_status item %r is not a status code or a range like 200-299" % (name, item))
        low = int(match.group(1))
        high = int(match.group(2) or low)
        if low > high:
            raise TargetError("target %r: expect_status range %r runs backwards; write %d-%d" % (name, item, high, low))
        ranges.append((low, high))
    if not ranges:
        raise TargetError("target %r: expect_status is empty; list at least one code or range" % name)
    return ranges


def compile_body_regex(pattern, name):
    if pattern is None:
        return None
    try:
        return re.compile(pattern.encode("utf-8"))
    except re.error as exc:
        raise TargetError("target %r: body_regex %r does not compile (%s)" % (name, pattern, exc))


def split_host_port(value, name, kind):
    """Parse ``host:port`` or ``[v6]:port``; the port is mandatory."""
    match = re.match(r"^\[([0-9A-Fa-f:.%a-zA-Z0-9]+)\]:(\d+)$", value) or re.match(r"^([^:\[\]\s]+):(\d+)$", value)
    if not match:
        raise TargetError("target %r: %s %r is not host:port (write e.g. db1.example.com:5432 or [::1]:443)"
                          % (name, kind, value))
    port = int(match.group(2))
    if not 0 < port < 65536:
        raise TargetError("target %r: %s %r has port %d outside 1-65535" % (name, kind, value, port))
    return match.group(1), port


def split_url(url, name):
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise TargetError("target %r: url %r must start with http:// or https://" % (name, url))
    if not parts.hostname:
        raise TargetError("target %r: url %r has no host" % (name, url))
    try:
        port = parts.port
    except ValueError:
        raise TargetError("target %r: url %r has an invalid port" % (name, url))
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def build_targets(raw_targets, raw_defaults=None):
    """Return ``(targets, secret_values)`` or raise TargetError naming the faulty target.

    ``secret_values`` are strings the caller must hide from output (credential header values).
    """
    defaults = dict(BUILTIN_DEFAULTS)
    secrets = set()
    if raw_defaults:
        validated = _validate_against(PER_TARGET_SPEC, raw_defaults, "defaults")
        defaults.update((key, value) for key, value in validated.items() if value is not None)
    if not raw_targets:
        raise TargetError("targets: give at least one target")

    targets = []
    seen = set()
    for index, raw in enumerate(raw_targets):
        label = _target_label(index, raw)
        if not isinstance(raw, dict):
            raise TargetError("%s: each target must be a dictionary, got %s" % (label, type(raw).__name__))
        validated = _validate_against(TARGET_SPEC, raw, label)
        name = validated["name"]
        if not name:
            raise TargetError("%s: name is required and must be unique" % label)
        if name in seen:
            raise TargetError("target %r: duplicate name; each target needs its own name" % name)
        seen.add(name)
        kinds = [kind for kind in ENDPOINT_KINDS if validated.get(kind)]
        if len(kinds) != 1:
            raise TargetError("target %r: set exactly one of url, tcp or tls (found %s)" % (name, ", ".join(kinds) or "none"))
        kind = kinds[0]
        explicit = dict((key, value) for key, value in validated.items() if key in PER_TARGET_SPEC and value is not None)
        _reject_inapplicable(name, kind, validated.get("url"), explicit)
        options = dict(defaults, **explicit)
        if kind == "url":
            host, port = split_url(validated["url"], name)
            target = ProbeTarget(name, kind, host, port, validated["url"], options)
        else:
            host, port = split_host_port(validated[kind], name, kind)
            target = ProbeTarget(name, kind, host, port, None, options)
        if options["timeout"] <= 0:
            raise TargetError("target %r: timeout must be above 0 seconds" % name)
        if options["retries"] < 0:
            raise TargetError("target %r: retries cannot be negative" % name)
        secrets.update(str(value) for key, value in (options["headers"] or {}).items()
                       if str(key).lower() in SECRET_HEADER_NAMES and value)
        targets.append(target)
    return targets, secrets


def _reject_inapplicable(name, kind, url, explicit):
    if kind != "url":
        misplaced = [key for key in HTTP_ONLY_OPTIONS if key in explicit]
        if misplaced:
            raise TargetError("target %r: option %s applies to url targets only, not %s" % (name, ", ".join(misplaced), kind))
    if kind == "tcp" or (kind == "url" and not url.lower().startswith("https:")):
        misplaced = [key for key in CERT_OPTIONS if key in explicit]
        if misplaced:
            raise TargetError("target %r: option %s needs TLS (an https url or a tls target)" % (name, ", ".join(misplaced)))

# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validate probe targets and merge them with the shared defaults; every error names the target."""

from __future__ import annotations

import os
import re
import ssl
from urllib.parse import urlsplit

from ansible_collections.fleetops.health.plugins.module_utils.redaction import mask_url, url_secrets
from ansible_collections.fleetops.health.plugins.module_utils.validation import OptionError, check_number

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

# option: (minimum, maximum, integer, minimum excluded), as documented in the probe module.
NUMBER_LIMITS = {
    "timeout": (0, 3600, False, True),
    "retries": (0, 10, True, False),
    "cert_min_days": (0, 3650, False, False),
}
# RFC 9110 token: what a method and a header name may be made of (no spaces, no CR/LF).
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


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
        """What the target points at; a changed endpoint restarts its threshold counts.

        The URL's credentials are masked: the endpoint is written to the state file.
        """
        return mask_url(self.url) if self.kind == "url" else "%s:%s:%d" % (self.kind, self.host, self.port)

    @property
    def uses_tls(self):
        return self.kind == "tls" or self.scheme == "https"


# Without ansible-core (the probes runner on a host), options are taken only with exactly these types: the
# role validated and normalized them with ArgumentSpecValidator on the controller before writing them.
_EXACT_TYPES = {"str": (str,), "path": (str,), "dict": (dict,), "list": (list,), "float": (float, int),
                "int": (int,), "bool": (bool,), "raw": (object,)}


def _validate_against(spec, params, label):
    try:
        from ansible.module_utils.common.arg_spec import ArgumentSpecValidator  # pylint: disable=import-outside-toplevel
        from ansible.module_utils.errors import UnsupportedError  # pylint: disable=import-outside-toplevel
    except ImportError:
        return _check_exact_types(spec, params, label)
    result = ArgumentSpecValidator(spec).validate(params)
    errors = result.errors.errors
    if errors:
        raise TargetError("%s: %s" % (label, "; ".join(
            ("unknown option " if isinstance(error, UnsupportedError) else "") + error.msg for error in errors)))
    return result.validated_parameters


def _check_exact_types(spec, params, label):
    """The no-ansible-core path of ``_validate_against``: unknown options and wrong types fail, nothing is coerced."""
    unknown = sorted(set(params) - set(spec))
    if unknown:
        raise TargetError("%s: unknown option %s" % (label, ", ".join(unknown)))
    validated = dict((name, None) for name in spec)
    for name, value in params.items():
        kind = spec[name].get("type", "str")
        wrong_bool = isinstance(value, bool) and kind in ("int", "float")
        if value is not None and (wrong_bool or not isinstance(value, _EXACT_TYPES[kind])):
            raise TargetError("%s: %s must be of type %s, got %s" % (label, name, kind, type(value).__name__))
        validated[name] = float(value) if kind == "float" and value is not None else value
    return validated


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
    """Host and port of ``url``; errors quote the URL with its credentials masked."""
    shown = mask_url(url)
    if _CONTROL.search(url) or " " in url:
        raise TargetError("target %r: url %r holds spaces or control characters; percent-encode them" % (name, shown))
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise TargetError("target %r: url %r must start with http:// or https://" % (name, shown))
    if not parts.hostname:
        raise TargetError("target %r: url %r has no host" % (name, shown))
    try:
        port = parts.port
    except ValueError:
        raise TargetError("target %r: url %r has an invalid port; use 1-65535" % (name, shown))
    if port is not None and not 0 < port < 65536:
        # The same rule as tcp and tls targets: port 0 is nobody's service.
        raise TargetError("target %r: url %r has port %d outside 1-65535" % (name, shown, port))
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def check_target_options(name, options):
    """Reject option values that are configuration mistakes, so they never look like a failing endpoint.

    Both HTTP engines then see the same, valid request: header values become strings, and CR/LF in a
    method, header name or value, an unreadable ca_path or a NaN timeout fail the task instead.
    Returns the options with numbers and headers normalised.
    """
    options = dict(options)
    for option, (minimum, maximum, integer, exclusive) in NUMBER_LIMITS.items():
        try:
            options[option] = check_number(options[option], "target %r: %s" % (name, option), minimum, maximum,
                                           integer=integer, min_exclusive=exclusive, allow_none=option == "cert_min_days")
        except OptionError as exc:
            raise TargetError(str(exc))
    method = options["method"]
    if not _TOKEN.match(method or ""):
        raise TargetError("target %r: method %r is not an HTTP method (letters only, e.g. GET, HEAD, POST)"
                          % (name, method))
    headers = {}
    for key, value in (options["headers"] or {}).items():
        key = str(key)
        if not _TOKEN.match(key):
            raise TargetError("target %r: header name %r is not valid (no spaces, colons or line breaks)" % (name, key))
        if isinstance(value, (dict, list, tuple)) or value is None:
            raise TargetError("target %r: header %s must be a string or a number, got %s"
                              % (name, key, "null" if value is None else type(value).__name__))
        # Numbers and booleans become text the same way on both engines (aiohttp refuses non-strings).
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        if _CONTROL.search(text):
            raise TargetError("target %r: header %s holds a line break or control character; remove it"
                              % (name, key))
        headers[key] = text
    options["headers"] = headers
    ca_path = options["ca_path"]
    if ca_path is not None:
        if not os.path.isfile(ca_path) or not os.access(ca_path, os.R_OK):
            raise TargetError("target %r: ca_path %s is not a readable file; give the PEM file of the CA "
                              "certificates" % (name, ca_path))
        try:
            ssl.create_default_context(cafile=ca_path)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise TargetError("target %r: ca_path %s holds no usable PEM certificate (%s)" % (name, ca_path, exc))
    return options


def target_url_secrets(raw_targets, raw_defaults=None):
    """Credentials in the targets' URLs (userinfo, token=...), for no_log, before anything is validated."""
    found = set()
    for raw in raw_targets or []:
        if isinstance(raw, dict) and isinstance(raw.get("url"), str):
            found.update(url_secrets(raw["url"]))
    return found


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
        options = check_target_options(name, dict(defaults, **explicit))
        if kind == "url":
            host, port = split_url(validated["url"], name)
            target = ProbeTarget(name, kind, host, port, validated["url"], options)
        else:
            host, port = split_host_port(validated[kind], name, kind)
            target = ProbeTarget(name, kind, host, port, None, options)
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

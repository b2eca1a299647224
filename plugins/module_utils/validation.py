# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check numbers and strings from users against their documented range: one helper for every module.

Public API: ``OptionError``, ``check_number``, ``check_order``, ``check_single_line``.
Every error names the option, the value and the range, so the message says how to fix it.
"""

from __future__ import annotations

import math
import re


class OptionError(ValueError):
    """An option's value is unusable; the message starts with the option's name."""


def _describe_range(minimum, maximum, min_exclusive, integer):
    kind = "a whole number" if integer else "a number"
    if minimum is not None and maximum is not None:
        if min_exclusive:
            return "%s above %s and at most %s" % (kind, _fmt(minimum), _fmt(maximum))
        return "%s from %s to %s" % (kind, _fmt(minimum), _fmt(maximum))
    if minimum is not None:
        return "%s %s %s" % (kind, "above" if min_exclusive else "of at least", _fmt(minimum))
    if maximum is not None:
        return "%s of at most %s" % (kind, _fmt(maximum))
    return "a finite number" if not integer else kind


def _fmt(value):
    if isinstance(value, float) and value.is_integer():
        return "%d" % value
    return "%s" % (value,)


def check_number(value, option, minimum=None, maximum=None, integer=False, min_exclusive=False, allow_none=False):
    """Return ``value`` as a finite float (or int when ``integer``) within ``[minimum, maximum]``.

    Strings holding numbers are accepted (YAML and Jinja often produce them); booleans, NaN, infinities,
    numbers too large for a float and values outside the range raise OptionError naming ``option``.
    ``min_exclusive`` makes the minimum itself invalid (for timeouts that must be above 0).
    """
    expected = _describe_range(minimum, maximum, min_exclusive, integer)
    if value is None:
        if allow_none:
            return None
        raise OptionError("%s: required, give %s" % (option, expected))
    if isinstance(value, bool):
        raise OptionError("%s: must be %s, got %r" % (option, expected, value))
    try:
        if integer:
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError(value)
                number = int(value)
            else:
                text = str(value).strip()
                if len(text) > 30:
                    raise OverflowError(value)
                number = int(text) if not isinstance(value, int) else value
        else:
            text = value if isinstance(value, (int, float)) else str(value).strip()
            number = float(text)
    except OverflowError:
        raise OptionError("%s: %s is far out of range; give %s" % (option, _short(value), expected))
    except (TypeError, ValueError):
        raise OptionError("%s: must be %s, got %s" % (option, expected, _short(value)))
    if not integer and not math.isfinite(number):
        raise OptionError("%s: must be %s, got %s (NaN and infinity are not allowed)" % (option, expected, _short(value)))
    too_low = minimum is not None and (number <= minimum if min_exclusive else number < minimum)
    too_high = maximum is not None and number > maximum
    if too_low or too_high:
        raise OptionError("%s: must be %s, got %s" % (option, expected, _short(value)))
    return number


def check_order(lower, higher, lower_option, higher_option):
    """``lower`` must be strictly below ``higher`` (warn below crit, scale-in below scale-out)."""
    if not lower < higher:
        raise OptionError("%s (%s) must be below %s (%s)" % (lower_option, _fmt(lower), higher_option, _fmt(higher)))


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_single_line(value, option, what="a value"):
    """Reject CR, LF, NUL and other control characters: they split headers, unit lines and log lines."""
    if value is not None and _CONTROL.search(str(value)):
        # The value itself is not echoed: it may be a header carrying a credential.
        raise OptionError("%s: %s may not contain line breaks or control characters" % (option, what))
    return value


def _short(value, limit=40):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"

# -*- coding: utf-8 -*-
"""Masking of URL credentials and credential-like values, and the checked numbers every module shares."""

from __future__ import annotations

import math

import pytest

from ansible_collections.fleetops.health.plugins.module_utils.im_adapters import Target, parse_retry_after, MAX_RETRY_AFTER
from ansible_collections.fleetops.health.plugins.module_utils.redaction import mask_data, mask_text, url_secrets
from ansible_collections.fleetops.health.plugins.module_utils.validation import OptionError, check_number


@pytest.mark.parametrize("text, masked", [
    ("http://admin:S3cretPW@host:8080/p?token=abc&x=1", "http://********@host:8080/p?token=********&x=1"),
    ("https://TOKEN@github.com/x", "https://********@github.com/x"),
    ("GET /robot/send?access_token=abc123&timestamp=1700&sign=Zm9v%2B failed",
     "GET /robot/send?access_token=********&timestamp=********&sign=******** failed"),
    ("user bob password=Hunter2Secret login FAILED", "user bob password=******** login FAILED"),
    ("X-Api-Key=abc; my_token=zz", "X-Api-Key=********; my_token=********"),
    ("mail bob@example.com, monkey=banana keyboard=2", "mail bob@example.com, monkey=banana keyboard=2"),
])
def test_mask_text(text, masked):
    assert mask_text(text) == masked


def test_mask_data_masks_keys_and_values_and_keeps_other_types():
    assert mask_data({"u": ["http://a:b@h/"], "n": 1, "password=x": None}) == {
        "u": ["http://********@h/"], "n": 1, "password=********": None}


def test_url_secrets_finds_short_alphabetic_credentials():
    assert url_secrets("http://admin:S3cretPW@host/?token=sekritpw&api_key=abcd&page=2&sig=ab") == {
        "S3cretPW", "sekritpw", "abcd"}


def test_im_target_treats_a_short_alphabetic_token_as_sensitive():
    assert "sekritpw" in Target("webhook", "https://h/hook?token=sekritpw").sensitive_strings()


@pytest.mark.parametrize("value, seconds", [
    (None, None), ("soon", None), ({"a": 1}, None), (True, None), (float("nan"), None), ("nan", None),
    ("7", 7.0), (7, 7.0), (-3, 0.0), (1e999, MAX_RETRY_AFTER), ("1e999", MAX_RETRY_AFTER), (10 ** 400, MAX_RETRY_AFTER),
])
def test_parse_retry_after_is_defensive_and_capped(value, seconds):
    assert parse_retry_after(value) == seconds


@pytest.mark.parametrize("value, kwargs, message", [
    ("inf", {}, "NaN and infinity"), (float("nan"), {}, "NaN and infinity"), (True, {}, "got True"),
    ("1" * 400, {"integer": True}, "far out of range"), (0, {"minimum": 0, "min_exclusive": True}, "above 0"),
    (150, {"minimum": 0, "maximum": 100}, "from 0 to 100, got 150"), ("lots", {}, "got 'lots'"),
])
def test_check_number_refuses_with_the_option_name(value, kwargs, message):
    with pytest.raises(OptionError) as caught:
        check_number(value, "opt", **kwargs)
    assert str(caught.value).startswith("opt: ") and message in str(caught.value)


def test_check_number_accepts_numeric_strings():
    assert check_number("2.5", "opt", 0, 10) == 2.5 and check_number("3", "opt", 0, 10, integer=True) == 3
    assert not math.isnan(check_number(0, "opt", 0, 1))

"""Target validation: every bad input fails with the target's name and the problem."""
import pytest

from ansible_collections.fleetops.health.plugins.module_utils.probe_targets import TargetError, build_targets


@pytest.mark.parametrize("targets, message", [
    ([{"name": "web", "url": "http://h/", "tiemout": 3}], "target 'web': unknown option tiemout"),
    ([{"name": "web", "url": "ftp://h/"}], "target 'web': url 'ftp://h/' must start with http:// or https://"),
    ([{"name": "web", "url": "http:///path"}], "target 'web': url 'http:///path' has no host"),
    ([{"name": "web", "url": "http://h:99999/"}], "target 'web': url 'http://h:99999/' has an invalid port"),
    ([{"name": "db", "tcp": "db1"}], "target 'db': tcp 'db1' is not host:port"),
    ([{"name": "db", "tcp": "db1:0"}], "target 'db': tcp 'db1:0' has port 0 outside 1-65535"),
    ([{"name": "cert", "tls": "::1:443"}], "target 'cert': tls '::1:443' is not host:port"),
    ([{"name": "a", "tcp": "h:1"}, {"name": "a", "tcp": "h:2"}], "target 'a': duplicate name"),
    ([{"tcp": "h:1"}], "targets[0]: name is required"),
    ([{"name": "x"}], "target 'x': set exactly one of url, tcp or tls (found none)"),
    ([{"name": "x", "url": "http://h/", "tcp": "h:1"}], "target 'x': set exactly one of url, tcp or tls (found url, tcp)"),
    ([{"name": "db", "tcp": "h:1", "body_regex": "ok"}], "target 'db': option body_regex applies to url targets only"),
    ([{"name": "web", "url": "http://h/", "cert_min_days": 3}], "target 'web': option cert_min_days needs TLS"),
    ([{"name": "web", "url": "http://h/", "expect_status": ["2xx"]}], "target 'web': expect_status item '2xx'"),
    ([{"name": "web", "url": "http://h/", "expect_status": ["399-200"]}], "runs backwards; write 200-399"),
    ([{"name": "web", "url": "http://h/", "body_regex": "("}], "target 'web': body_regex '(' does not compile"),
    ([{"name": "web", "url": "http://h/", "timeout": 0}], "target 'web': timeout: must be a number above 0"),
    ([{"name": "web", "url": "http://h/", "timeout": "soon"}], "target 'web': argument 'timeout' is of type str"),
    (["http://h/"], "targets[0]: each target must be a dictionary"),
    ([], "targets: give at least one target"),
])
def test_bad_targets_name_the_target_and_the_problem(targets, message):
    with pytest.raises(TargetError) as caught:
        build_targets(targets)
    assert message in str(caught.value)


def test_bad_defaults_are_named():
    with pytest.raises(TargetError, match="^defaults: unknown option url"):
        build_targets([{"name": "a", "tcp": "h:1"}], {"url": "http://h/"})


def test_target_options_override_defaults_which_override_builtins():
    (first, second), _secrets = build_targets(
        [{"name": "a", "url": "https://h:8443/x"}, {"name": "b", "url": "http://h/", "timeout": 1}],
        {"timeout": 2.5, "expect_status": [200, "300-302"]})
    assert first.options["timeout"] == 2.5 and second.options["timeout"] == 1
    assert first.status_ranges == [(200, 200), (300, 302)]
    assert first.options["retries"] == 0 and first.options["validate_certs"] is True
    assert (first.host, first.port, first.scheme) == ("h", 8443, "https")
    assert (second.port, second.scheme) == (80, "http")


def test_defaults_may_hold_http_options_that_tcp_targets_ignore():
    (target,), _secrets = build_targets([{"name": "db", "tcp": "[::1]:5432"}], {"body_regex": "ok"})
    assert (target.kind, target.host, target.port, target.endpoint) == ("tcp", "::1", 5432, "tcp:::1:5432")


def test_credential_header_values_are_returned_as_secrets():
    _targets, secrets = build_targets([{"name": "a", "url": "http://h/",
                                        "headers": {"Authorization": "Bearer s3cret", "Accept": "text/plain"}}])
    assert secrets == {"Bearer s3cret"}

"""Every role's defaults/main.yml and meta/argument_specs.yml describe the same knobs with the same defaults.

Runs over every role under roles/, so a new role is checked as soon as it lands. A knob in defaults
that the spec does not know is never validated; a spec option without a default in defaults/main.yml
is a knob users cannot see; a default that differs between the two is documentation that lies.
"""
import os
import re

import pytest
import yaml

ROLES_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles"))
ROLES = sorted(name for name in os.listdir(ROLES_DIR)
               if os.path.isdir(os.path.join(ROLES_DIR, name))) if os.path.isdir(ROLES_DIR) else []
PYTHON_TYPES = {"str": str, "path": str, "int": int, "float": (int, float), "bool": bool, "list": list, "dict": dict}


def load_yaml(*parts):
    with open(os.path.join(ROLES_DIR, *parts)) as handle:
        return yaml.safe_load(handle)


def role_files(role):
    defaults_path = os.path.join(ROLES_DIR, role, "defaults", "main.yml")
    specs_path = os.path.join(ROLES_DIR, role, "meta", "argument_specs.yml")
    return defaults_path, specs_path


def walk_options(options, defaults, where):
    """Yield a problem sentence for each way ``options`` (a spec) and ``defaults`` (values) disagree."""
    for name, spec in options.items():
        label = "%s.%s" % (where, name)
        declared = spec.get("type", "str")
        if "default" in spec:
            if name not in defaults:
                yield "%s: the spec has a default but defaults/main.yml has no such key" % label
                continue
            if spec["default"] != defaults[name]:
                yield "%s: spec default %r != defaults/main.yml %r" % (label, spec["default"], defaults[name])
        if name not in defaults:
            continue
        value = defaults[name]
        templated = isinstance(value, str) and "{{" in value
        if declared in PYTHON_TYPES and value is not None and not templated:
            if not isinstance(value, PYTHON_TYPES[declared]) or (declared == "int" and isinstance(value, bool)):
                yield "%s: default %r is not of the declared type %s" % (label, value, declared)
        if "choices" in spec and not templated:
            # A list's choices are those of its elements.
            chosen = value if declared == "list" and isinstance(value, list) else [value]
            if any(item not in spec["choices"] for item in chosen):
                yield "%s: default %r is not one of the choices %s" % (label, value, spec["choices"])
        if declared == "dict" and "options" in spec and isinstance(value, dict):
            yield from walk_options(spec["options"], value, label)
            extra = sorted(set(value) - set(spec["options"]))
            if extra:
                yield "%s: defaults/main.yml sets %s that the spec does not describe" % (label, ", ".join(extra))


@pytest.mark.skipif(not ROLES, reason="no roles yet")
@pytest.mark.parametrize("role", ROLES)
def test_defaults_and_main_spec_name_the_same_knobs(role):
    defaults_path, specs_path = role_files(role)
    assert os.path.exists(specs_path), "roles/%s: meta/argument_specs.yml is missing" % role
    defaults = (load_yaml(role, "defaults", "main.yml") or {}) if os.path.exists(defaults_path) else {}
    main = load_yaml(role, "meta", "argument_specs.yml")["argument_specs"]["main"].get("options", {})
    assert sorted(set(defaults) - set(main)) == [], "roles/%s: knobs in defaults/main.yml that meta/argument_specs.yml (main) does not validate" % role
    without_default = sorted(name for name in set(main) - set(defaults) if not main[name].get("required"))
    assert without_default == [], "roles/%s: optional spec options with no default in defaults/main.yml" % role


@pytest.mark.skipif(not ROLES, reason="no roles yet")
@pytest.mark.parametrize("role", ROLES)
def test_every_entry_point_agrees_with_defaults(role):
    defaults_path, specs_path = role_files(role)
    defaults = (load_yaml(role, "defaults", "main.yml") or {}) if os.path.exists(defaults_path) else {}
    problems = []
    for entry_point, spec in load_yaml(role, "meta", "argument_specs.yml")["argument_specs"].items():
        problems.extend(walk_options(spec.get("options", {}), defaults, "%s:%s" % (role, entry_point)))
    assert problems == []


@pytest.mark.skipif(not ROLES, reason="no roles yet")
@pytest.mark.parametrize("role", ROLES)
def test_every_knob_in_defaults_has_a_comment(role):
    defaults_path = role_files(role)[0]
    if not os.path.exists(defaults_path):
        pytest.skip("roles/%s has no defaults/main.yml" % role)
    with open(defaults_path) as handle:
        lines = handle.read().splitlines()
    uncommented = []
    for index, line in enumerate(lines):
        match = re.match(r"^([a-z][a-z0-9_]*):", line)
        if not match:
            continue
        previous = index - 1
        # A knob may share the comment of the knob right above it ("... and ..." pairs).
        while previous >= 0 and re.match(r"^[a-z][a-z0-9_]*:", lines[previous]):
            previous -= 1
        while previous >= 0 and lines[previous].startswith(" "):
            previous -= 1
        if previous < 0 or not lines[previous].startswith("#"):
            uncommented.append(match.group(1))
    assert uncommented == [], "roles/%s: knobs without a comment above them" % role


def test_the_checks_catch_a_disagreement():
    spec = {"knob": {"type": "int", "default": 3},
            "mode": {"type": "str", "choices": ["a", "b"], "default": "c"},
            "modes": {"type": "list", "elements": "str", "choices": ["a", "b"], "default": ["a", "c"]},
            "policy": {"type": "dict", "default": {"x": 1}, "options": {"x": {"type": "int", "default": 2}}}}
    problems = list(walk_options(spec, {"knob": "3", "mode": "c", "modes": ["a", "c"], "policy": {"x": 1, "y": 2}},
                                 "role:main"))
    assert any("role:main.knob: spec default 3 != defaults/main.yml '3'" in problem for problem in problems)
    assert any("role:main.knob: default '3' is not of the declared type int" in problem for problem in problems)
    assert any("role:main.mode: default 'c' is not one of the choices" in problem for problem in problems)
    assert any("role:main.modes: default ['a', 'c'] is not one of the choices" in problem for problem in problems)
    assert any("role:main.policy.x: spec default 2 != defaults/main.yml 1" in problem for problem in problems)
    assert any("sets y that the spec does not describe" in problem for problem in problems)

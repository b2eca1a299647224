#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: probe
short_description: Concurrent HTTP, TCP and TLS health probes with up/down thresholds kept across runs
version_added: 0.1.0
description:
  - Probes many HTTP(S) URLs, TCP ports and TLS endpoints at once from the host the task runs on, in one
    module call, and returns one compact result per target in C(ansible_facts.fleet_probes).
  - Run it on a managed host to probe that host's local services, or delegate it to C(localhost) to probe
    from the control node.
  - HTTP uses L(aiohttp,https://docs.aiohttp.org/) when it is importable, else a thread pool of Python's
    C(http.client); the result's C(engine) says which ran. TCP and TLS checks use asyncio streams and C(ssl).
  - With O(state_file), consecutive counts persist between runs and a target changes state only after
    O(unhealthy_threshold) failed runs or O(healthy_threshold) good runs, reporting a C(transition).
  - A target seen for the first time starts C(up) with both counts at 0, so a target that never worked is
    reported C(down), with one C(failed) transition, after O(unhealthy_threshold) runs. One run counts as one
    observation whatever the O(targets[].retries).
author:
  - fleetops.health contributors (@fleetops)
extends_documentation_fragment:
  - fleetops.health.attributes
attributes:
  check_mode:
    support: full
    details: The probes run in check mode too (they only read); nothing is created, written or moved in the state
      folder, and the results show the transitions a real run would record.
  diff_mode:
    support: none
    details: Nothing changes, so there is nothing to diff.
  platform:
    details: Any POSIX host with Python 3.8 or later; it probes from the host the task runs on.
notes:
  - C(changed) is always false. The module never changes the probed services; updating its own state file
    is bookkeeping.
  - Header values named Authorization, Proxy-Authorization, Cookie, X-Api-Key or X-Auth-Token are hidden
    from the output.
  - Configuration mistakes (a missing O(targets[].ca_path), CR/LF in a header or method, port 0, NaN or
    out-of-range numbers) fail the task with a message naming the target; they never count as a failing
    endpoint, so they cannot push a healthy target C(down).
options:
  targets:
    description:
      - The endpoints to probe. Each needs a unique O(targets[].name) and exactly one of O(targets[].url),
        O(targets[].tcp) or O(targets[].tls). The other keys override O(defaults) for this target.
      - An unknown key, a malformed URL, a missing port or a duplicate name fails the task with a message
        naming the target.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Unique name of the target, used in results and as its key in O(state_file).
        type: str
        required: true
      url:
        description:
          - An C(http://) or C(https://) URL to request; its port, when given, is 1-65535.
          - Credentials in it (C(user:password@), C(token=), C(key=), C(sig=) and other credential-like query
            values) are masked in the results, in errors, in O(state_file) and in the module's invocation.
        type: str
      tcp:
        description: C(host:port) (or C([v6addr]:port)) to connect to; the connection is closed at once.
        type: str
      tls:
        description: C(host:port) to connect to with a TLS handshake, reporting the certificate's days left.
        type: str
      method:
        description: HTTP method, a single word such as C(GET) or C(HEAD). Default C(GET).
        type: str
      headers:
        description:
          - HTTP request headers. Numbers and booleans are sent as text (C(5), C(true)) by both engines.
          - A line break or control character in a name or value fails the task.
        type: dict
      body:
        description: HTTP request body.
        type: str
      expect_status:
        description:
          - Status codes that count as healthy, as codes (V(204)) or ranges (V(200-299)). Default V(200-399).
        type: list
        elements: raw
      body_regex:
        description: A regular expression the response body (its first MiB) must match.
        type: str
      timeout:
        description: Seconds for one attempt in all (connect, headers and body), above 0 and at most 3600, never beyond O(deadline). Default V(5).
        type: float
      retries:
        description: Extra attempts after a failed one, made at once, 0 to 10. Default V(0).
        type: int
      validate_certs:
        description: Verify the certificate chain and host name. Default V(true).
        type: bool
      ca_path:
        description:
          - A PEM file of CA certificates to verify against instead of the system store.
          - A missing or unreadable file fails the task; it is a configuration error, not a failing endpoint.
        type: path
      cert_min_days:
        description:
          - Fail the target (error_kind C(tls)) when its certificate expires in fewer days than this, 0 to 3650.
        type: float
      follow_redirects:
        description: Follow up to 10 redirects and judge the final answer. Default V(true).
        type: bool
  defaults:
    description:
      - Per-target options (every suboption of O(targets) except name, url, tcp and tls) applied to each
        target that does not set them.
    type: dict
    default: {}
  concurrency:
    description:
      - How many probes run at once, 1 to 10000. The soft open-file limit is raised to fit when the hard
        limit allows; otherwise concurrency is lowered with a warning.
    type: int
    default: 200
  deadline:
    description:
      - Seconds the whole call may take (above 0, at most 86400), the module's process included, on both engines. Targets not
        finished by then get C(error_kind=timeout). Blocking work (name lookups, stdlib HTTP) runs in
        daemon threads that are abandoned at the deadline, so neither a resolver that hangs nor a server
        that sends a byte a second keeps the process alive after the results are final.
    type: float
    default: 60
  http_engine:
    description:
      - The HTTP client. V(auto) uses aiohttp when importable, else V(stdlib) (http.client threads).
    type: str
    choices: [auto, aiohttp, stdlib]
    default: auto
  event_loop:
    description:
      - The event loop the probes run on. V(auto) uses L(uvloop,https://uvloop.readthedocs.io/) when importable
        (Debian C(python3-uvloop)), else V(asyncio)'s own loop; the result's C(event_loop) says which ran.
      - uvloop spends about half the CPU per connection; the results and the O(deadline) are the same on both.
    type: str
    choices: [auto, uvloop, asyncio]
    default: auto
  state_file:
    description:
      - JSON file on the probing host that keeps each target's state and consecutive counts between runs,
        for example C(/var/lib/fleetops/probe_state.json). Written atomically (mode 0600) under a lock
        (C(<state_file>.lock)), so several plays may share it; a corrupt or wrong-shaped file is moved aside
        with a warning and the run continues.
      - Its folder is created (mode 0700) when missing. A folder that is a symlink, is owned by another user or is
        writable by group or others is refused, and so is a state file that is a symlink.
      - Without it, a target's state is simply its result of this run and there are no transitions.
    type: path
  healthy_threshold:
    description: Consecutive good runs that bring a C(down) target back C(up) (transition C(recovered)), 1 to 1000.
    type: int
    default: 2
  unhealthy_threshold:
    description: Consecutive failed runs that mark an C(up) target C(down) (transition C(failed)), 1 to 1000.
    type: int
    default: 3
  fail_on_down:
    description: Fail the task when any target's state is C(down). The results are returned either way.
    type: bool
    default: false
requirements:
  - python >= 3.8
  - aiohttp (Debian C(python3-aiohttp)) for the fast HTTP engine; optional
  - uvloop (Debian C(python3-uvloop)) for the faster event loop; optional
seealso:
  - module: ansible.builtin.uri
  - module: ansible.builtin.wait_for
"""

EXAMPLES = r"""
- name: Probe this host's services
  fleetops.health.probe:
    defaults:
      timeout: 3
    targets:
      - name: api
        url: http://127.0.0.1:8080/healthz
        body_regex: '"status":\s*"ok"'
      - name: postgres
        tcp: 127.0.0.1:5432
      - name: public-cert
        tls: www.example.com:443
        cert_min_days: 14

- name: Probe from the control node, with thresholds kept on it
  fleetops.health.probe:
    targets: "{{ sweep_probe_targets }}"
    state_file: /var/lib/fleetops/probe_state.json
    unhealthy_threshold: 3
    healthy_threshold: 2
    deadline: 30
  delegate_to: localhost

- name: Act on targets that just went down
  ansible.builtin.debug:
    msg: "{{ ansible_facts.fleet_probes.results | selectattr('transition', 'equalto', 'failed') | map(attribute='name') }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts set by the module.
  returned: always
  type: dict
  contains:
    fleet_probes:
      description: The probe results.
      returned: always
      type: dict
      contains:
        engine:
          description: The HTTP engine that ran, V(aiohttp) or V(stdlib).
          type: str
          sample: aiohttp
        event_loop:
          description: The event loop that ran, V(uvloop) or V(asyncio).
          type: str
          sample: uvloop
        results:
          description: One entry per target, in the order of O(targets).
          type: list
          elements: dict
          contains:
            name:
              description: The target's name.
              type: str
              sample: api
            kind:
              description: V(http), V(tcp) or V(tls).
              type: str
              sample: http
            ok:
              description: Whether this run's probe succeeded.
              type: bool
              sample: true
            state:
              description: V(up) or V(down). Without O(state_file) it follows RV(ansible_facts.fleet_probes.results[].ok).
              type: str
              sample: up
            transition:
              description: V(failed) when this run marked the target down, V(recovered) when it marked it up, else null.
              type: str
              sample: null
            consecutive_ok:
              description: Consecutive good runs, this one included.
              type: int
              sample: 5
            consecutive_fail:
              description: Consecutive failed runs, this one included.
              type: int
              sample: 0
            code:
              description: HTTP status of the final answer; null for tcp, tls and failed connections.
              type: int
              sample: 200
            latency_ms:
              description: Milliseconds from the start of the last attempt to its answer; null when nothing answered.
              type: float
              sample: 3.2
            cert_days_left:
              description: Days until the peer certificate expires (https and tls); null otherwise.
              type: float
              sample: 87.4
            error:
              description: What went wrong, for a person; null when ok.
              type: str
              sample: status 503 is not in expect_status 200-399
            error_kind:
              description:
                - V(dns) (name does not resolve), V(refused) (connection refused, reset or closed unanswered),
                  V(timeout) (attempt timeout or O(deadline)), V(tls) (handshake, verification or
                  O(targets[].cert_min_days)), V(status) (unexpected or invalid answer), V(body)
                  (O(targets[].body_regex) did not match); null when ok.
              type: str
              sample: status
        summary:
          description: Counts and latencies over all targets.
          type: dict
          contains:
            total:
              description: Number of targets.
              type: int
              sample: 3
            up:
              description: Targets whose state is up.
              type: int
              sample: 2
            down:
              description: Targets whose state is down.
              type: int
              sample: 1
            p50_latency_ms:
              description: Median latency over targets that answered; null when none did.
              type: float
              sample: 2.1
            p95_latency_ms:
              description: 95th percentile latency over targets that answered; null when none did.
              type: float
              sample: 48.7
            duration_ms:
              description: Wall time of all probes.
              type: float
              sample: 61.3
"""

import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.fleetops.health.plugins.module_utils.probe_engine import (
    AIOHTTP_IMPORT_ERROR, UVLOOP_IMPORT_ERROR, ProbeEngine, summarize)
from ansible_collections.fleetops.health.plugins.module_utils.probe_state import ProbeStateStore, apply_without_state
from ansible_collections.fleetops.health.plugins.module_utils.probe_targets import (
    TargetError, build_targets, raw_target_secrets)
from ansible_collections.fleetops.health.plugins.module_utils.redaction import mask_data
from ansible_collections.fleetops.health.plugins.module_utils.state_file import StateDirError
from ansible_collections.fleetops.health.plugins.module_utils.validation import OptionError, check_number

# option: (minimum, maximum, integer, minimum excluded), as documented above.
NUMBER_LIMITS = {
    "concurrency": (1, 10000, True, False),
    "deadline": (0, 86400, False, True),
    "healthy_threshold": (1, 1000, True, False),
    "unhealthy_threshold": (1, 1000, True, False),
}


def run_probes(module):
    params = module.params
    targets, secrets = build_targets(params["targets"], params["defaults"])
    module.no_log_values.update(secrets)
    store = None
    if params["state_file"]:
        store = ProbeStateStore(params["state_file"], params["healthy_threshold"], params["unhealthy_threshold"],
                                check_mode=module.check_mode)
        store.preflight()
    engine = ProbeEngine(params["http_engine"], params["concurrency"], params["deadline"], params["event_loop"])
    started = time.monotonic()
    results, warnings = engine.run(targets)
    duration_ms = (time.monotonic() - started) * 1000.0
    for warning in warnings:
        module.warn(warning)
    if store is None:
        apply_without_state(results)
    else:
        # The file is locked only now, after the probes: concurrent runs wait milliseconds, not a probe deadline.
        for warning in store.record(results, dict((target.name, target.endpoint) for target in targets)):
            module.warn(warning)
    return dict(engine=engine.http_engine, event_loop=engine.event_loop, results=results, summary=summarize(results, duration_ms))


class ProbeModule(AnsibleModule):
    """AnsibleModule that masks the targets' credentials in every failure, Ansible's own validation errors
    included: those fail inside the constructor, before main() could register the secrets.

    no_log masks values only, and a target given as a string becomes a dict whose key is the URL, so the
    invocation is also passed through mask_data, which masks keys too.
    """

    def fail_json(self, msg, **kwargs):
        params = getattr(self, "params", None) or {}
        self.no_log_values.update(raw_target_secrets(params.get("targets"), params.get("defaults")))
        kwargs.setdefault("invocation", {"module_args": mask_data(params)})
        super(ProbeModule, self).fail_json(msg=msg, **kwargs)


def main():
    module = ProbeModule(
        argument_spec=dict(
            targets=dict(type="list", elements="dict", required=True),
            defaults=dict(type="dict", default={}),
            concurrency=dict(type="int", default=200),
            deadline=dict(type="float", default=60.0),
            http_engine=dict(type="str", default="auto", choices=["auto", "aiohttp", "stdlib"]),
            event_loop=dict(type="str", default="auto", choices=["auto", "uvloop", "asyncio"]),
            state_file=dict(type="path"),
            healthy_threshold=dict(type="int", default=2),
            unhealthy_threshold=dict(type="int", default=3),
            fail_on_down=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    # URL credentials are masked in everything the module returns, the invocation included, before any
    # validation error can quote them.
    module.no_log_values.update(raw_target_secrets(module.params["targets"], module.params["defaults"]))
    try:
        for option, (minimum, maximum, integer, exclusive) in NUMBER_LIMITS.items():
            module.params[option] = check_number(module.params[option], option, minimum, maximum,
                                                 integer=integer, min_exclusive=exclusive)
    except OptionError as exc:
        module.fail_json(msg="probe: %s" % exc)
    if module.params["http_engine"] == "aiohttp" and AIOHTTP_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("aiohttp (Debian package python3-aiohttp)"),
                         exception=str(AIOHTTP_IMPORT_ERROR))
    if module.params["event_loop"] == "uvloop" and UVLOOP_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("uvloop (Debian package python3-uvloop), or event_loop=auto"),
                         exception=str(UVLOOP_IMPORT_ERROR))
    try:
        facts = run_probes(module)
    except (TargetError, StateDirError) as exc:
        module.fail_json(msg="probe: %s" % exc)
    down = [result["name"] for result in facts["results"] if result["state"] == "down"]
    if module.params["fail_on_down"] and down:
        module.fail_json(msg="targets down: %s" % ", ".join(down), ansible_facts=dict(fleet_probes=facts))
    module.exit_json(changed=False, ansible_facts=dict(fleet_probes=facts))


if __name__ == "__main__":
    main()

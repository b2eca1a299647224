# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: flush a spool of N messages in one im_notify task vs ansible.builtin.uri looping once per message.

Both post to the same loopback WeCom contract receiver. The anchor is the uri loop, the usual workaround;
an empty playbook is timed too, so that the tasks' own time can be told apart from ansible-playbook start-up.

    .venv/bin/python bench/im_notify/run.py            # 200 messages
    .venv/bin/python bench/im_notify/run.py --quick    # 50 messages
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEV_COLLECTIONS = os.path.join(ROOT, ".cache", "dev-collections")
sys.path.insert(0, DEV_COLLECTIONS)  # the symlink that tests/unit/conftest.py keeps

from ansible_collections.fleetops.health.plugins.module_utils.im_adapters import (  # noqa: E402
    Notification,
    Target,
    adapter_for,
)
from ansible_collections.fleetops.health.plugins.module_utils.im_delivery import Spool  # noqa: E402
from ansible_collections.fleetops.health.tests.unit.im_receivers import IMReceiver  # noqa: E402

EMPTY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.meta: noop
"""

FLUSH = """
- hosts: localhost
  gather_facts: false
  tasks:
    - fleetops.health.im_notify:
        platform: wecom
        url: "{{ url }}"
        flush_spool: true
        spool_dir: "{{ spool_dir }}"
      register: flushed
    - ansible.builtin.assert:
        that: flushed.flushed == count | int
"""

URI_LOOP = """
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.uri:
        url: "{{ url }}"
        method: POST
        body_format: json
        body: "{{ item }}"
      loop: "{{ lookup('file', payloads) | from_json }}"
      loop_control:
        label: "{{ item.text.content[:20] }}"
      register: posted
      failed_when: posted.json.errcode != 0
"""


def run_playbook(workdir, name, text, extra_vars):
    path = os.path.join(workdir, name + ".yml")
    with open(path, "w") as handle:
        handle.write(text)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=os.pathsep.join([DEV_COLLECTIONS, os.path.join(ROOT, ".cache", "collections")]),
               ANSIBLE_LOCAL_TEMP=os.path.join(workdir, "tmp"))
    extra_vars = dict(extra_vars, ansible_python_interpreter=sys.executable)
    started = time.perf_counter()
    done = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
                           "-c", "local", "-e", json.dumps(extra_vars), path],
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit("%s failed:\n%s" % (name, (done.stdout + done.stderr)[-3000:]))
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 messages instead of 200")
    parser.add_argument("--count", type=int, help="number of messages (default 200, 50 with --quick)")
    args = parser.parse_args()
    count = args.count or (50 if args.quick else 200)

    with tempfile.TemporaryDirectory(prefix="bench-im-notify-") as workdir, IMReceiver("wecom") as receiver:
        adapter = adapter_for("wecom")
        target = Target("wecom", receiver.url)
        spool = Spool(os.path.join(workdir, "spool"))
        spool.ensure_writable()
        payloads = []
        for number in range(count):
            payload, _truncated = adapter.render(Notification("alert %d: disk /var at 9%d%%" % (number, number % 10),
                                                              title="db%d" % (number % 7), severity="warning"))
            spool.put(target, payload, False, "benchmark")
            payloads.append(payload)
        with open(os.path.join(workdir, "payloads.json"), "w") as handle:
            json.dump(payloads, handle)

        common = {"url": receiver.url, "count": count}
        empty = run_playbook(workdir, "empty", EMPTY, common)
        flush = run_playbook(workdir, "flush", FLUSH, dict(common, spool_dir=spool.directory))
        flushed = len(receiver.messages)
        uri = run_playbook(workdir, "uri_loop", URI_LOOP, dict(common, payloads=os.path.join(workdir, "payloads.json")))
        looped = len(receiver.messages) - flushed

    if (flushed, looped) != (count, count):
        raise SystemExit("receiver got %d flushed and %d looped messages, expected %d each" % (flushed, looped, count))
    rows = [
        ("ansible.builtin.uri loop (anchor)", uri, uri - empty),
        ("im_notify flush_spool, one task", flush, flush - empty),
        ("empty playbook (start-up)", empty, 0.0),
    ]
    print("im_notify benchmark: %d messages to a loopback WeCom receiver, localhost, connection local" % count)
    print("%-36s %10s %12s %12s %10s" % ("method", "wall s", "tasks s", "ms/message", "vs anchor"))
    for name, wall, tasks in rows:
        ratio = "%.1fx" % ((uri - empty) / tasks) if tasks > 0 else "-"
        per_message = "%.2f" % (tasks * 1000.0 / count) if tasks > 0 else "-"
        print("%-36s %10.2f %12.2f %12s %10s" % (name, wall, tasks, per_message, ratio))
    print("speed-up of the flush over the uri loop: %.1fx wall, %.1fx task time"
          % (uri / flush, (uri - empty) / max(flush - empty, 1e-6)))


if __name__ == "__main__":
    main()

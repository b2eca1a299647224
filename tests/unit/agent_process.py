# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the agent as its own process, the way its unit runs it (the role's entry script), for tests and the bench."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import ansible_collections.fleetops.health.plugins as _plugins

COLLECTION_ROOT = os.path.dirname(os.path.abspath(_plugins.__path__[0]))
# The directory holding ansible_collections/, as the runtime role lays it out on a host.
RUNTIME_PATH = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(_plugins.__path__[0]))))
ENTRY_SCRIPT = os.path.join(COLLECTION_ROOT, "roles", "agent", "files", "fleetops_agent.py")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def parse_metrics(text):
    """``{(name, frozenset(labels.items())): value}`` from the text format (enough for our own output)."""
    values = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _sep, value = line.rpartition(" ")
        labels = {}
        name = series
        if "{" in series:
            name, _sep, rest = series.partition("{")
            for pair in rest.rstrip("}").split('",'):
                if pair:
                    key, _sep, raw = pair.partition("=")
                    labels[key] = raw.strip('"')
        values[(name, frozenset(labels.items()))] = float(value)
    return values


class AgentProcess(object):
    """``with AgentProcess(tmp_path, interval=1) as agent: agent.metrics()``; config keys as keyword arguments."""

    def __init__(self, directory, **config):
        self.directory = str(directory)
        self.config_path = os.path.join(self.directory, "agent.json")
        self.log_path = os.path.join(self.directory, "agent.log")
        self.config = dict({"state_dir": os.path.join(self.directory, "state"), "listen_port": free_port()}, **config)
        self.proc = None

    @property
    def url(self):
        return "http://127.0.0.1:%d/metrics" % self.config["listen_port"]

    def write_config(self, document=None):
        with open(self.config_path, "w") as handle:
            if isinstance(document, str):
                handle.write(document)
            else:
                json.dump(document if document is not None else self.config, handle)

    def start(self, timeout=15.0):
        self.write_config()
        env = dict(os.environ, FLEETOPS_RUNTIME_PATH=RUNTIME_PATH, PYTHONDONTWRITEBYTECODE="1")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, ENTRY_SCRIPT, "--config", self.config_path],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("agent exited %s: %s" % (self.proc.returncode, self.read_log()))
            try:
                if "fleetops_agent_sample_interval_seconds " in self.metrics():   # the first sample is out
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("agent did not serve /metrics within %ss: %s" % (timeout, self.read_log()))

    def metrics(self, timeout=5.0):
        with urllib.request.urlopen(self.url, timeout=timeout) as response:
            return response.read().decode("utf-8")

    def values(self):
        return parse_metrics(self.metrics())

    def value(self, name, **labels):
        return self.values().get((name, frozenset(labels.items())))

    def wait_for(self, predicate, timeout=10.0, step=0.1):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            time.sleep(step)
        return predicate()

    def read_log(self):
        with open(self.log_path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")

    def stop(self, timeout=5.0):
        """SIGTERM; return the seconds it took to exit."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        started = time.monotonic()
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return time.monotonic() - started

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
        self.log.close()

# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent's Prometheus side: a registry with one custom collector over the latest snapshot, the self
metrics, the /metrics server (prometheus_client's WSGI app and server; TLS and basic auth around it) and the
node_exporter textfile.

Names follow the metrics contract between the agent, the probes role and the alert rules. The collector
never samples: a scrape renders what the sampling loop published last, so a scrape costs only rendering.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ssl
import threading
import traceback

try:
    from prometheus_client import CollectorRegistry, Counter, Summary
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.exposition import ThreadingWSGIServer, generate_latest, make_wsgi_app
    from prometheus_client.process_collector import ProcessCollector
except ImportError:
    PROMETHEUS_CLIENT_IMPORT_ERROR = traceback.format_exc()
    ThreadingWSGIServer = object
else:
    PROMETHEUS_CLIENT_IMPORT_ERROR = None

VERDICT_LEVEL = {"ok": 0, "warn": 1, "crit": 2}
RATIO_FIGURES = ("cpu", "memory", "swap", "disk", "inodes", "iowait")


class Snapshot(object):
    """What one sample produced; replaced whole, so a scrape never sees half of two samples."""

    def __init__(self, facts=None, verdict="ok", score=None, baselines=None, firing=(), interval=None,
                 spool_messages=0, history_bytes=0, heartbeat=None):
        self.facts = facts or {}
        self.verdict = verdict
        self.score = score
        self.baselines = baselines or {}
        self.firing = list(firing)
        self.interval = interval
        self.spool_messages = spool_messages
        self.history_bytes = history_bytes
        self.heartbeat = heartbeat


def _ratio(percent):
    return None if percent is None else percent / 100.0


def _gauge(name, documentation, value, unit_labels=None):
    family = GaugeMetricFamily(name, documentation, labels=unit_labels)
    if value is not None and unit_labels is None:
        family.add_metric([], value)
    return family


class AgentCollector(object):
    """prometheus_client custom collector over ``holder.snapshot``."""

    def __init__(self, holder):
        self.holder = holder

    def collect(self):  # pylint: disable=too-many-locals
        snapshot = self.holder.snapshot
        facts = snapshot.facts
        if not facts:
            return
        cpu = facts.get("cpu") or {}
        yield _gauge("fleetops_cpu_usage_ratio", "Busy share of all cores over the last interval (0-1).",
                     _ratio(cpu.get("percent")))
        yield _gauge("fleetops_memory_usage_ratio", "Memory in use (total - available) over total (0-1).",
                     _ratio((facts.get("memory") or {}).get("percent")))
        swap = facts.get("swap") or {}
        yield _gauge("fleetops_swap_usage_ratio", "Swap in use over swap total (0 without swap).",
                     _ratio(swap.get("percent")) if swap.get("total") else 0.0 if swap else None)
        load = facts.get("load") or {}
        for minutes in ("1", "5", "15"):
            yield _gauge("fleetops_load%s" % minutes, "Load average over %s minute(s)." % minutes, load.get(minutes))
        disk = GaugeMetricFamily("fleetops_disk_usage_ratio", "Used share of each mounted filesystem (0-1).",
                                 labels=["mountpoint"])
        inodes = GaugeMetricFamily("fleetops_disk_inode_usage_ratio", "Used share of inodes per filesystem (0-1).",
                                   labels=["mountpoint"])
        for entry in facts.get("disks") or []:
            if entry.get("error") or not entry.get("mount"):
                continue
            if entry.get("percent") is not None:
                disk.add_metric([entry["mount"]], entry["percent"] / 100.0)
            if entry.get("inodes_percent") is not None:
                inodes.add_metric([entry["mount"]], entry["inodes_percent"] / 100.0)
        yield disk
        yield inodes
        receive = GaugeMetricFamily("fleetops_network_receive_bytes_per_second",
                                    "Bytes received per second over the last interval.", labels=["interface"])
        transmit = GaugeMetricFamily("fleetops_network_transmit_bytes_per_second",
                                     "Bytes sent per second over the last interval.", labels=["interface"])
        for link in facts.get("network") or []:
            if link.get("interface"):
                receive.add_metric([link["interface"]], link["rx_bps"])
                transmit.add_metric([link["interface"]], link["tx_bps"])
        yield receive
        yield transmit
        baseline = GaugeMetricFamily("fleetops_baseline_ratio", "The dynamic threshold from this host's history "
                                     "(hour-of-week mean x factor or mean + k sigma, the higher), where one exists.",
                                     labels=["figure", "mountpoint"])
        for figure, found in sorted(snapshot.baselines.items()):
            kind, _sep, key = figure.partition(":")
            if found.get("threshold") is not None and kind in RATIO_FIGURES:
                baseline.add_metric([kind, key], found["threshold"] / 100.0)
        yield baseline
        units = facts.get("units") or {}
        failed = GaugeMetricFamily("fleetops_systemd_unit_failed", "1 for each failed systemd unit.", labels=["unit"])
        for unit in units.get("failed") or []:
            failed.add_metric([unit["unit"]], 1)
        yield failed
        if "failed_count" in units:
            yield _gauge("fleetops_systemd_units_failed", "How many systemd units are failed.", units["failed_count"])
        yield _gauge("fleetops_host_verdict_level", "The host verdict: 0 ok, 1 warn, 2 crit.",
                     VERDICT_LEVEL.get(snapshot.verdict))
        yield _gauge("fleetops_host_score", "Weighted load score, 0 (idle) to 100 (saturated).", snapshot.score)
        firing = GaugeMetricFamily("fleetops_alert_firing", "1 while a local alert rule fires.", labels=["rule"])
        for rule in snapshot.firing:
            firing.add_metric([rule], 1)
        yield firing
        yield _gauge("fleetops_agent_sample_interval_seconds", "The wait between samples now (tighter after a "
                     "sudden change).", snapshot.interval)
        yield _gauge("fleetops_agent_spool_messages", "IM messages waiting in the spool.", snapshot.spool_messages)
        yield _gauge("fleetops_agent_history_bytes", "Size of the SQLite history (database and WAL).",
                     snapshot.history_bytes)
        yield _gauge("fleetops_agent_heartbeat_timestamp_seconds", "Unix time of the last heartbeat.", snapshot.heartbeat)


class AgentMetrics(object):
    """The registry, the counters the loop updates, and the latest snapshot the collector renders."""

    def __init__(self):
        if PROMETHEUS_CLIENT_IMPORT_ERROR:
            raise ImportError("the agent needs prometheus_client: install the Debian package python3-prometheus-client "
                              "(the fleetops.health.runtime role does)")
        self.snapshot = Snapshot()
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        self.samples = Counter("fleetops_agent_samples", "Samples taken since the agent started.",
                               registry=self.registry)
        self.sample_duration = Summary("fleetops_agent_sample_duration_seconds", "Time one sample took.",
                                       registry=self.registry)
        self.registry.register(AgentCollector(self))

    def publish(self, snapshot):
        self.snapshot = snapshot

    def render(self):
        return generate_latest(self.registry)


def _with_basic_auth(app, user, password_sha256):
    """WSGI wrapper: 401 unless the request carries ``user`` and a password whose SHA-256 matches."""
    expected_user = user.encode("utf-8")

    def guarded(environ, start_response):
        header = environ.get("HTTP_AUTHORIZATION", "")
        allowed = False
        if header.startswith("Basic "):
            try:
                given_user, _sep, given_password = base64.b64decode(header[6:]).partition(b":")
                digest = hashlib.sha256(given_password).hexdigest()
                allowed = hmac.compare_digest(given_user, expected_user) and hmac.compare_digest(digest, password_sha256)
            except (ValueError, TypeError):
                allowed = False
        if not allowed:
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="fleetops agent"'),
                                                ("Content-Type", "text/plain")])
            return [b"authentication required\n"]
        return app(environ, start_response)

    return guarded


class MetricsServer(object):
    """prometheus_client's WSGI app on its threading WSGI server, with optional TLS and basic auth.

    Built here rather than with ``start_http_server`` so that it can be shut down (SIGTERM, reload with a
    new address) and so that TLS works with Debian 12's prometheus_client (0.16 has no certfile option).
    """

    def __init__(self, metrics, address, port, tls_cert_file=None, tls_key_file=None, basic_auth_user=None,
                 basic_auth_password_sha256=None):
        from wsgiref.simple_server import make_server  # pylint: disable=import-outside-toplevel
        from prometheus_client.exposition import _SilentHandler  # pylint: disable=import-outside-toplevel
        app = make_wsgi_app(metrics.registry)
        if basic_auth_user:
            app = _with_basic_auth(app, basic_auth_user, basic_auth_password_sha256)
        import socket  # pylint: disable=import-outside-toplevel

        class Server(ThreadingWSGIServer):
            address_family = socket.AF_INET6 if ":" in address else socket.AF_INET

        self.httpd = make_server(address, port, app, Server, handler_class=_SilentHandler)
        if tls_cert_file:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(tls_cert_file, tls_key_file)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="metrics-http")
        self.thread.daemon = True

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(2)

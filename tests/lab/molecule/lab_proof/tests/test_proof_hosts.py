"""Testinfra checks of the lab proof scenario: what a person would check by hand on each host."""
from __future__ import annotations

import time

SERVICE = "fleetops-lab-proof.service"
TIMER = "fleetops-lab-proof-tick.timer"
TICKS = "/var/lib/fleetops-lab-proof/ticks"


def service_property(host, name: str) -> str:
    return host.check_output(f"systemctl show --property={name} --value {SERVICE}")


def wait_for(predicate, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.25)


def test_service_and_timer_are_enabled_and_active(host):
    assert host.service(SERVICE).is_enabled
    assert host.service(SERVICE).is_running
    assert host.service(TIMER).is_enabled
    assert host.run(f"systemctl is-active {TIMER}").stdout.strip() == "active"


def test_systemd_brings_the_service_back_after_kill_9(host):
    killed = service_property(host, "MainPID")
    restarts_before = int(service_property(host, "NRestarts"))
    host.run_expect([0], f"kill -9 {killed}")
    started = time.monotonic()

    def new_main_pid():
        pid = service_property(host, "MainPID")
        active = service_property(host, "ActiveState") == "active"
        return pid if active and pid not in ("0", killed) else None

    # RestartSec=1; without the cgroup2 bind mount this takes about 90 s, so 15 s shows the lab is right.
    assert wait_for(new_main_pid, timeout=15), f"{SERVICE} not back 15 s after kill -9 of {killed}"
    print(f"recovered in {time.monotonic() - started:.1f}s")
    assert int(service_property(host, "NRestarts")) == restarts_before + 1


def test_timer_fires_repeatedly(host):
    def tick_count():
        ticks = host.file(TICKS)
        return len(ticks.content_string.split()) if ticks.exists else 0

    seen = tick_count()
    # OnUnitActiveSec=2s: two more ticks within 10 s, or the timer is not firing on its own.
    assert wait_for(lambda: tick_count() >= seen + 2, timeout=10), f"{TIMER} ticked {tick_count() - seen} time(s)"

# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""fleet_report_files through ansible-playbook: modes, honest changed, check mode, symlinks, bad modes."""
import json
import os
import stat

from ansible_collections.fleetops.health.tests.unit.playbook_runner import COLLECTION_ROOT, run_playbook

TEMPLATES = os.path.join(COLLECTION_ROOT, "roles", "sweep", "templates")
# A real report from the filter: localhost has no facts here, so it is crit with "no data". A fixed time
# makes two runs' reports equal.
REPORT = "{{ hostvars | fleetops.health.fleet_report(['localhost'], {}, '2026-11-30T00:00:00Z') }}"


def write_play(tmp_path, dest, check=False, **options):
    args = dict({"report": REPORT, "dest": str(dest)}, **options)
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "write", "fleetops.health.fleet_report_files": args, "register": "written",
         "check_mode": check},
        {"ansible.builtin.debug": {"msg": "CHANGED={{ written.changed }}"}}]}]
    path = tmp_path / "play.yml"
    path.write_text(json.dumps(play))
    # The role's templates folder is where the sweep finds the HTML template; a bare play looks next to it.
    (tmp_path / "templates").mkdir(exist_ok=True)
    link = tmp_path / "templates" / "fleet-report.html.j2"
    if not link.exists():
        link.symlink_to(os.path.join(TEMPLATES, "fleet-report.html.j2"))
    return path


def run(tmp_path, dest, check=False, **options):
    proc = run_playbook(write_play(tmp_path, dest, check, **options))
    said = [text.split("CHANGED=", 1)[1].strip("'\" ") for text in proc.stdout.splitlines() if "CHANGED=" in text]
    return proc, ({"changed": said[-1] == "True"} if said else None)


def test_writes_both_files_private_then_reports_no_change(tmp_path):
    dest = tmp_path / "report"
    proc, result = run(tmp_path, dest)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert result["changed"] is True
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o700
    for name in ("fleet-report.json", "fleet-report.html"):
        assert stat.S_IMODE(os.stat(dest / name).st_mode) == 0o600
    written = json.loads((dest / "fleet-report.json").read_text())
    assert written["counts"]["crit"] == 1 and written["generated_at"] == "2026-11-30T00:00:00Z", written
    assert "<title>CRIT" in (dest / "fleet-report.html").read_text()
    proc, result = run(tmp_path, dest)
    assert proc.returncode == 0 and result["changed"] is False, proc.stdout[-3000:]


def test_a_wider_mode_on_disk_is_a_change_that_gets_fixed(tmp_path):
    dest = tmp_path / "report"
    run(tmp_path, dest)
    os.chmod(dest / "fleet-report.json", 0o644)
    proc, result = run(tmp_path, dest)
    assert result["changed"] is True
    assert stat.S_IMODE(os.stat(dest / "fleet-report.json").st_mode) == 0o600


def test_check_mode_writes_nothing_and_predicts_the_change(tmp_path):
    dest = tmp_path / "report"
    proc, result = run(tmp_path, dest, check=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert result["changed"] is True
    assert not dest.exists()


def test_a_symlinked_report_file_is_refused_not_followed(tmp_path):
    dest = tmp_path / "report"
    dest.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    (dest / "fleet-report.json").symlink_to(victim)
    proc = run(tmp_path, dest)[0]
    assert proc.returncode != 0
    assert "is a symlink" in proc.stdout
    assert victim.read_text() == "keep me"


def test_a_mode_that_is_not_octal_names_the_option(tmp_path):
    proc = run(tmp_path, tmp_path / "report", mode="rw-------")[0]
    assert proc.returncode != 0
    assert "mode must be a quoted octal mode" in proc.stdout
    assert not (tmp_path / "report").exists()

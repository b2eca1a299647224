"""host_resources through ansible-playbook on localhost: a CPU burner and a file writer started here show up."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

import ansible_collections

COLLECTIONS_DIR = os.path.dirname(os.path.abspath(list(ansible_collections.__path__)[0]))
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - fleetops.health.host_resources:
        window: 0.5
        top: 10
      register: measured
    - ansible.builtin.copy:
        content: "{{ {'facts': fleet_resources, 'changed': measured.changed} | to_json }}"
        dest: "%(out)s"
        mode: "0600"
"""


def run_playbook(tmp_path):
    out = tmp_path / "facts.json"
    playbook = tmp_path / "measure.yml"
    playbook.write_text(PLAYBOOK % {"out": out})
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.pathsep.join(
        [COLLECTIONS_DIR] + [p for p in os.environ.get("ANSIBLE_COLLECTIONS_PATH", "").split(os.pathsep) if p]))
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inventory), str(playbook)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout
    return json.loads(out.read_text())


def block_device_of(path):
    """The whole-disk name under /sys/block that holds ``path``."""
    st = os.stat(path)
    device_dir = os.path.realpath("/sys/dev/block/%d:%d" % (os.major(st.st_dev), os.minor(st.st_dev)))
    if os.path.exists(os.path.join(device_dir, "partition")):
        device_dir = os.path.dirname(device_dir)
    return os.path.basename(device_dir)


@pytest.fixture
def burner():
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.2)
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def writer(tmp_path):
    """Writes and fsyncs 4 MiB chunks to a file in tmp_path until stopped."""
    target = tmp_path / "io-load.bin"
    code = ("import os,sys\nfd=os.open(sys.argv[1],os.O_WRONLY|os.O_CREAT,0o600)\nchunk=os.urandom(4<<20)\n"
            "while True:\n    os.lseek(fd,0,0)\n    os.write(fd,chunk)\n    os.fsync(fd)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(target)])
    yield target
    proc.kill()
    proc.wait()


def test_burner_shows_in_top_and_raises_cpu_and_writes_show_as_io(tmp_path, burner, writer):
    device = block_device_of(str(writer.parent))
    if not os.path.isdir(os.path.join("/sys/block", device)) or device.startswith(("loop", "zram", "ram")):
        pytest.skip("tmp_path is not on a block device (%s)" % device)
    result = run_playbook(tmp_path)
    facts = result["facts"]
    assert result["changed"] is False
    top = dict((row["pid"], row) for row in facts["processes"]["top_cpu"])
    assert burner.pid in top, facts["processes"]["top_cpu"]
    # The burner is always runnable; on a shared, loaded machine it still gets a fair share of a core.
    burner_share = top[burner.pid]["cpu_percent"]
    assert burner_share >= 10
    # the whole-host figure (all cores) includes at least what the burner used
    assert facts["cpu"]["percent"] >= 0.9 * burner_share / facts["cpu"]["cores"]
    io = dict((row["device"], row) for row in facts["io"])
    assert io[device]["write_bps"] >= 1024 * 1024, io
    assert io[device]["write_iops"] > 0
    assert io[device]["busy_percent"] > 0

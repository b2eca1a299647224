"""The fleetops.health host lab: a Debian 12 base image and N systemd hosts in podman.

There is no Docker engine and no registry on CI machines, so the lab builds its own image with
debootstrap and runs it with rootful podman. Every podman call uses the lab's containers.conf
(tests/lab/containers.conf) through CONTAINERS_CONF; that file says why each setting is needed.

Command line (the Makefile's lab-image, lab-up and lab-down call these):
    lab.py image [--rebuild]          build the base image, or reuse the cached one
    lab.py up -n N [--name LAB]       start N hosts LAB-1..LAB-N and write the inventories
    lab.py up --hosts a,b [--name LAB] [--json]
                                      start hosts with these exact container names (and print
                                      them as JSON: the molecule create playbook reads that)
    lab.py down [--name LAB]          remove the lab's containers and network
    lab.py status [--name LAB]        list the lab's hosts with their address and memory

Python (the e2e fixtures and the molecule create/destroy playbooks use this):
    lab = Lab("fleetops-lab")
    hosts = lab.up(count=3)           # list of LabHost, inventories written
    lab.podman_inventory, lab.ssh_inventory
    lab.down()

LAB defaults to $FLEETOPS_LAB_NAME or "fleetops-lab". Give concurrent users different names: the
container names, the network and the inventory files all derive from it.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

LAB_DIR = Path(__file__).resolve().parent
CACHE_DIR = LAB_DIR / "cache"
CONTAINERS_CONF = LAB_DIR / "containers.conf"
# The lab of `make lab-up`; its inventories are the plain tests/lab/cache/inventory.*.yml.
MAKE_LAB_NAME = "fleetops-lab"
DEFAULT_LAB_NAME = os.environ.get("FLEETOPS_LAB_NAME", MAKE_LAB_NAME)
LABEL = "fleetops-lab"
# Set on the hosts of a lab that one process owns (a pytest session): once that process is gone, the
# next session removes them, even if the owner died without tearing down.
OWNER_LABEL = "fleetops-lab.owner-pid"
IMAGE_REPOSITORY = "localhost/fleetops-lab"
HOST_PYTHON = "/usr/bin/python3"
READY_STATES = ("running", "degraded")
# ssh masters to lab hosts live at this path (ssh computes %C from local host, address, port, user),
# so that removing a host can also close its master: see _close_ssh_masters. The molecule base config
# passes the same path. ssh expands `~` from the password database, not from $HOME, and creates no
# folder for a ControlPath it is given: the lab makes that folder itself (ensure_ssh_control_dir).
SSH_CONTROL_PATH = "~/.ansible/cp/%C"
# Each systemd host holds several inotify instances (path units, journald, logind); at the kernel's
# default of 128 per user, a lab of more than ~10 hosts fails to boot. 8192 starts 50 hosts in 40 s.
INOTIFY_INSTANCES_PER_HOST = 40
INOTIFY_SYSCTL = Path("/proc/sys/fs/inotify/max_user_instances")

SUITE = "bookworm"
VARIANT = "minbase"
# python3-psutil feeds host_resources, python3-aiohttp the probes, nginx-light the load-balancer
# scenarios (installed but disabled, so a scenario enables it when it wants it). uvloop and regex are what
# probe and log_scan use when present; requests and prometheus-client are what the runtime role installs
# for the agent and the probes runner, in the image so that the roles are tested offline, as a site without
# a mirror runs them.
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "python3", "python3-apt", "openssh-server", "iproute2",
    "procps", "sudo", "ca-certificates", "curl", "python3-psutil", "python3-aiohttp", "nginx-light",
    "python3-uvloop", "python3-regex", "python3-requests", "python3-prometheus-client",
)
# Runs inside the debootstrapped root. Timers that wake every container at random are masked; ssh
# host keys and the machine-id are left for each host to create at boot, so no two hosts share them.
CHROOT_SETUP = r"""
set -eu
systemctl mask apt-daily.timer apt-daily-upgrade.timer fstrim.timer e2scrub_all.timer \
    e2scrub_reap.service >/dev/null 2>&1
systemctl disable nginx.service >/dev/null 2>&1
rm -f /etc/ssh/ssh_host_*
mkdir -p /etc/systemd/system/ssh.service.d
cat > /etc/systemd/system/ssh.service.d/lab-host-keys.conf <<'EOF'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
EOF
printf 'PasswordAuthentication no\nPermitRootLogin prohibit-password\n' > /etc/ssh/sshd_config.d/lab.conf
install -d -m 0700 /root/.ssh
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/* /var/log/*.log
"""
IMAGE_CHANGES = ('CMD ["/sbin/init"]', "STOPSIGNAL SIGRTMIN+3", "ENV container=podman")


def log(message: str) -> None:
    # stderr, so that stdout carries only what a caller parses (up --json).
    print(f"lab: {message}", file=sys.stderr, flush=True)


def podman_env() -> dict:
    return dict(os.environ, CONTAINERS_CONF=str(CONTAINERS_CONF))


def podman(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run podman with the lab's containers.conf and return the completed process (text output)."""
    result = subprocess.run(
        ["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout, check=False,
    )
    if check and result.returncode != 0:
        raise LabError(f"podman {' '.join(args[:3])} failed (rc={result.returncode}): {result.stderr.strip()}")
    return result


class LabError(RuntimeError):
    pass


@contextlib.contextmanager
def timed(what: str):
    start = time.monotonic()
    yield
    log(f"{what}: {time.monotonic() - start:.1f}s")


# ---------------------------------------------------------------------------------------------- image


def recipe_hash() -> str:
    """Hash of everything that shapes the image; the mirror is left out, it only changes the source."""
    recipe = {"suite": SUITE, "variant": VARIANT, "packages": PACKAGES, "setup": CHROOT_SETUP,
              "changes": IMAGE_CHANGES}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def image_tag() -> str:
    return f"{IMAGE_REPOSITORY}:{recipe_hash()}"


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses: on CI only Debian's package host is reachable."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        if not source.is_file():
            continue
        uris, suites = [], []
        for line in source.read_text(errors="replace").splitlines():
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            if words[0] == "deb" and len(words) >= 3 and words[2] == SUITE:
                uris.append(words[1])
            elif words[0] == "URIs:":
                uris.extend(words[1:])
            elif words[0] == "Suites:":
                suites.extend(words[1:])
        if source.suffix == ".sources" and SUITE not in suites:
            continue
        for uri in uris:
            if uri.rstrip("/").endswith("/debian"):
                return uri
    return "http://deb.debian.org/debian"


def image_exists(tag: str) -> bool:
    return podman("image", "exists", tag, check=False).returncode == 0


def build_image(rebuild: bool = False) -> str:
    """Return the tag of the lab image, importing the cached tarball or building it when missing.

    Concurrent callers wait on a lock in the cache, so the image is built once.
    """
    tag = image_tag()
    tarball = CACHE_DIR / f"fleetops-lab-{recipe_hash()}.tar"
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / "image.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not rebuild and image_exists(tag):
            log(f"image {tag} is present")
            return tag
        if rebuild or not tarball.exists():
            with timed(f"debootstrap {SUITE} into {tarball.name}"):
                _debootstrap_tarball(tarball)
        with timed(f"podman import {tag}"):
            podman("import", *[f"--change={change}" for change in IMAGE_CHANGES],
                   str(tarball), tag, timeout=600)
        _remove_stale_tarballs(keep=tarball)
    return tag


def _debootstrap_tarball(tarball: Path) -> None:
    if not shutil.which("debootstrap"):
        raise LabError("debootstrap is missing: run 'make system-deps' (apt-get install debootstrap)")
    build_dir = CACHE_DIR / f"build-{recipe_hash()}"
    rootfs = build_dir / "rootfs"
    _remove_build_dir(build_dir)
    rootfs.mkdir(parents=True)
    try:
        mirror = debian_mirror()
        log(f"debootstrap --variant={VARIANT} {SUITE} from {mirror}")
        run_checked(["debootstrap", f"--variant={VARIANT}", f"--include={','.join(PACKAGES)}",
                     SUITE, str(rootfs), mirror], timeout=1200)
        run_checked(["chroot", str(rootfs), "/bin/sh", "-c", CHROOT_SETUP], timeout=120)
        partial = tarball.with_suffix(".partial")
        run_checked(["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(partial), "."],
                    timeout=600)
        partial.rename(tarball)
    finally:
        _remove_build_dir(build_dir)


def _remove_build_dir(build_dir: Path) -> None:
    """Delete a build directory, unmounting first what an interrupted debootstrap left mounted.

    Deleting through a /proc, /sys or /dev mount would reach the host's own files, so a mount that
    will not go away stops the deletion instead.
    """
    if not build_dir.exists():
        return
    prefix = str(build_dir.resolve()) + "/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount_point in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount_point], check=False)
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    still_mounted = [m for m in mounts if m.startswith(prefix)]
    if still_mounted:
        raise LabError(f"not deleting {build_dir}: still mounted: {' '.join(still_mounted)}")
    shutil.rmtree(build_dir)


def _remove_stale_tarballs(keep: Path) -> None:
    for old in CACHE_DIR.glob("fleetops-lab-*.tar"):
        if old != keep:
            old.unlink()


def run_checked(command: list, timeout: float) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
        raise LabError(f"{command[0]} failed (rc={result.returncode}):\n{tail}")


# ------------------------------------------------------------------------------------------- preflight


def ensure_ssh_control_dir() -> Path:
    """Create the folder of SSH_CONTROL_PATH under the home directory ssh will use (the passwd entry)."""
    home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    control_dir = home / ".ansible" / "cp"
    control_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return control_dir


def check_prerequisites(host_count: int) -> None:
    """Fail with one line naming the missing piece and its fix, before any host starts."""
    for command, package in (("podman", "podman"), ("runc", "runc"), ("ssh", "openssh-client"),
                             ("ssh-keygen", "openssh-client")):
        if not shutil.which(command):
            raise LabError(f"{command} is missing: run 'make system-deps' (apt-get install {package})")
    backend = podman("info", "--format", "{{.Host.NetworkBackend}}").stdout.strip()
    if backend != "netavark":
        raise LabError(f"podman uses the {backend or 'unknown'} network backend, whose lab hosts cannot resolve "
                       "each other by name: run 'make system-deps' (apt-get install netavark aardvark-dns); "
                       f"{CONTAINERS_CONF.name} selects netavark")
    if not Path("/usr/lib/podman/aardvark-dns").exists() and not shutil.which("aardvark-dns"):
        raise LabError("aardvark-dns is missing, so lab hosts cannot resolve each other by name: "
                       "run 'make system-deps' (apt-get install aardvark-dns)")
    _ensure_inotify_instances(host_count)
    ensure_ssh_control_dir()


def _ensure_inotify_instances(host_count: int) -> None:
    wanted = max(host_count * INOTIFY_INSTANCES_PER_HOST, 128)
    current = int(INOTIFY_SYSCTL.read_text())
    if current >= wanted:
        return
    if os.geteuid() != 0:
        raise LabError(f"fs.inotify.max_user_instances is {current}; {host_count} hosts need {wanted}: "
                       f"run 'sudo sysctl -w fs.inotify.max_user_instances={wanted}'")
    INOTIFY_SYSCTL.write_text(f"{wanted}\n")
    log(f"raised fs.inotify.max_user_instances from {current} to {wanted} for {host_count} hosts")


# ----------------------------------------------------------------------------------------------- hosts


@dataclasses.dataclass
class LabHost:
    """One running lab host: the container name is also its hostname and inventory name."""

    name: str
    address: str
    state: str = ""

    def as_dict(self) -> dict:
        return dict(dataclasses.asdict(self), identity_file=str(ssh_key()), user="root")


def ssh_key() -> Path:
    """The lab's private key (created once in the cache); its .pub is every host's authorized key."""
    key = CACHE_DIR / "ssh" / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        run_checked(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fleetops-lab", "-f", str(key)],
                    timeout=30)
    return key


class Lab:
    """A named set of lab hosts on a podman network of their own."""

    def __init__(self, name: str = DEFAULT_LAB_NAME, owner_pid=None) -> None:
        self.name = name
        self.owner_pid = owner_pid
        self.network = name
        prefix = "" if name == MAKE_LAB_NAME else f"{name}."
        self.podman_inventory = CACHE_DIR / f"{prefix}inventory.podman.yml"
        self.ssh_inventory = CACHE_DIR / f"{prefix}inventory.ssh.yml"

    def host_names(self, count: int) -> list:
        return [f"{self.name}-{index}" for index in range(1, count + 1)]

    def up(self, count: int = 3, names=None, wait_timeout: float = 180) -> list:
        """Start fresh hosts (``names`` or ``count`` of them), wait for systemd, write inventories."""
        names = list(names) if names else self.host_names(count)
        start = time.monotonic()
        check_prerequisites(len(names))
        tag = build_image()
        self.remove_containers()
        self._ensure_network()
        key = ssh_key()
        owner = ["--label", f"{OWNER_LABEL}={self.owner_pid}"] if self.owner_pid else []
        with timed(f"start {len(names)} host(s)"):
            for name in names:
                podman(
                    "run", "-d", "--name", name, "--hostname", name, "--label", f"{LABEL}={self.name}", *owner,
                    "--network", self.network, "--systemd=always",
                    # systemd needs the cgroup2 tree to see a killed unit's children go; without it a
                    # kill -9 leaves the unit in stop-sigterm for 90 s.
                    "--volume", "/sys/fs/cgroup/unified:/sys/fs/cgroup/unified:rw",
                    "--volume", f"{key}.pub:/root/.ssh/authorized_keys:ro",
                    tag, "/sbin/init",
                )
        with timed("wait for systemd on every host"), ThreadPoolExecutor(max_workers=len(names)) as pool:
            states = list(pool.map(lambda name: self._wait_for_systemd(name, wait_timeout), names))
        hosts = [LabHost(name, self._address(name), state) for name, state in zip(names, states)]
        self._check_name_resolution(names)
        self.write_inventories(hosts)
        log(f"up: {len(hosts)} host(s) ready in {time.monotonic() - start:.1f}s; "
            f"inventories {self.podman_inventory} and {self.ssh_inventory}")
        return hosts

    def down(self) -> None:
        """Remove every container of this lab and its network; safe to call when nothing runs."""
        with timed(f"down {self.name}"):
            self.remove_containers()
            if podman("network", "exists", self.network, check=False).returncode == 0:
                podman("network", "rm", "-f", self.network, check=False)
            for inventory in (self.podman_inventory, self.ssh_inventory):
                inventory.unlink(missing_ok=True)

    def container_names(self) -> list:
        listed = podman("ps", "-a", "--filter", f"label={LABEL}={self.name}", "--format", "{{.Names}}")
        return sorted(listed.stdout.split())

    def remove_containers(self) -> None:
        names = self.container_names()
        if names:
            addresses = [self._address(name) for name in names]
            podman("rm", "-f", "-t", "0", *names, timeout=120)
            _close_ssh_masters(addresses)
            log(f"removed {len(names)} container(s): {' '.join(names)}")

    def hosts(self) -> list:
        return [LabHost(name, self._address(name)) for name in self.container_names()]

    def memory(self) -> dict:
        """Memory in use per host, in bytes, as the container's cgroup reports it."""
        usage = {}
        for name in self.container_names():
            stats = json.loads(podman("stats", "--no-stream", "--format", "json", name).stdout)
            usage[name] = _parse_size(stats[0]["mem_usage"].split("/")[0])
        return usage

    def _ensure_network(self) -> None:
        if podman("network", "exists", self.network, check=False).returncode != 0:
            podman("network", "create", "--label", f"{LABEL}={self.name}", self.network)

    def _wait_for_systemd(self, name: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                result = podman("exec", name, "systemctl", "is-system-running", "--wait", check=False,
                                timeout=max(deadline - time.monotonic(), 1))
            except subprocess.TimeoutExpired as exc:
                raise LabError(f"{name}: systemd did not finish booting within {timeout:.0f}s") from exc
            state = result.stdout.strip()
            # Right after `podman run` systemd may not listen on its bus yet; --wait needs the bus.
            if state or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if state not in READY_STATES:
            raise LabError(f"{name}: systemd is {state or 'unreachable'}: {result.stderr.strip()}")
        if state == "degraded":
            failed = podman("exec", name, "systemctl", "--failed", "--no-legend", "--plain", check=False)
            log(f"{name}: systemd degraded, failed units: {failed.stdout.strip()}")
        return state

    def _check_name_resolution(self, names: list) -> None:
        """Each host must find another by name, as the probe and load-balancer scenarios do."""
        if len(names) < 2:
            return
        for source, target in ((names[0], names[-1]), (names[-1], names[0])):
            found = podman("exec", source, "getent", "hosts", target, check=False, timeout=30)
            if found.returncode != 0:
                raise LabError(f"lab host {source} cannot resolve {target} by name (podman network {self.network} "
                               "has no DNS): run 'make system-deps' (apt-get install netavark aardvark-dns), then "
                               f"'make lab-down' to recreate the network")

    def _address(self, name: str) -> str:
        inspected = json.loads(podman("inspect", "--format", "json", name).stdout)[0]
        networks = inspected["NetworkSettings"]["Networks"] or {}
        return networks.get(self.network, {}).get("IPAddress", "")

    def write_inventories(self, hosts: list) -> None:
        """Write the podman-connection and the ssh inventories (JSON is valid YAML), group ``lab``."""
        common = {"ansible_python_interpreter": HOST_PYTHON}
        podman_vars = dict(common, ansible_connection="containers.podman.podman")
        ssh_vars = dict(
            common, ansible_connection="ansible.builtin.ssh", ansible_user="root",
            ansible_ssh_private_key_file=str(ssh_key()),
            ansible_ssh_common_args="-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                                    f"-o LogLevel=ERROR -o IdentitiesOnly=yes -o ControlPath={SSH_CONTROL_PATH}",
        )
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        _write_inventory(self.podman_inventory, podman_vars, {host.name: host.name for host in hosts})
        _write_inventory(self.ssh_inventory, ssh_vars, {host.name: host.address for host in hosts})


def _close_ssh_masters(addresses: list) -> None:
    """Ask the ssh master connections to these hosts (see SSH_CONTROL_PATH) to exit.

    A master outlives its host by ControlPersist (60 s). Were the address given to a new host in that
    time, ssh would send the new session down the old, dead TCP connection and hang.
    """
    for address in addresses:
        if address:
            subprocess.run(["ssh", "-O", "exit", "-o", f"ControlPath={SSH_CONTROL_PATH}", "-l", "root", address],
                           capture_output=True, timeout=10, check=False)


def reap_orphaned_labs() -> None:
    """Remove the labs whose owning process has exited (see OWNER_LABEL)."""
    listed = json.loads(podman("ps", "-a", "--filter", f"label={OWNER_LABEL}", "--format", "json").stdout or "[]")
    orphans = set()
    for container in listed:
        labels = container.get("Labels") or {}
        pid = int(labels.get(OWNER_LABEL, "0") or 0)
        if pid and not Path(f"/proc/{pid}").exists():
            orphans.add(labels[LABEL])
    for name in sorted(orphans):
        log(f"removing lab {name}: its owner process is gone")
        Lab(name).down()


def _write_inventory(path: Path, group_vars: dict, address_of: dict) -> None:
    inventory = {"lab": {"hosts": {name: {"ansible_host": address} for name, address in address_of.items()},
                         "vars": group_vars}}
    path.write_text("# Written by tests/lab/lab.py up; rewritten on every run.\n"
                    + json.dumps(inventory, indent=2) + "\n")


def _parse_size(text: str) -> int:
    units = {"b": 1, "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3,
             "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3}
    text = text.strip().lower()
    number = text.rstrip("kmgib")
    return int(float(number) * units[text[len(number):] or "b"])


# ------------------------------------------------------------------------------------------------- cli


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    commands = parser.add_subparsers(dest="command", required=True)
    image = commands.add_parser("image", help="build or reuse the base image")
    image.add_argument("--rebuild", action="store_true", help="debootstrap again even if cached")
    for command in ("up", "down", "status"):
        sub = commands.add_parser(command)
        sub.add_argument("--name", default=DEFAULT_LAB_NAME, help="lab name (default %(default)s)")
        if command == "up":
            sub.add_argument("-n", "--count", type=int, default=3, help="number of hosts (default 3)")
            sub.add_argument("--hosts", help="comma-separated container names instead of NAME-1..N")
            sub.add_argument("--json", action="store_true",
                             help="print the hosts (name, address, user, identity_file) as JSON")
    args = parser.parse_args(argv)
    try:
        if args.command == "image":
            start = time.monotonic()
            tag = build_image(rebuild=args.rebuild)
            size = podman("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip()
            log(f"image {tag} ({int(size) / 1e6:.0f} MB) ready in {time.monotonic() - start:.1f}s")
            return 0
        lab = Lab(args.name)
        if args.command == "up":
            names = args.hosts.split(",") if args.hosts else None
            hosts = lab.up(count=args.count, names=names)
            if args.json:
                print(json.dumps([host.as_dict() for host in hosts]))
                return 0
        elif args.command == "down":
            lab.down()
            return 0
        memory = lab.memory()
        for host in lab.hosts():
            print(f"{host.name:24} {host.address:16} {memory.get(host.name, 0) / 2 ** 20:6.1f} MiB")
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

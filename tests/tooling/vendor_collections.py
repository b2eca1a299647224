"""Unpack selected collections from the PyPI `ansible` wheel: Galaxy is out of reach here and in CI."""
import pathlib
import subprocess
import sys
import zipfile


def main(spec_path, wheel_dir, dest):
    lines = [line.strip() for line in pathlib.Path(spec_path).read_text().splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    wheel_req, collections = lines[0], lines[1:]
    wheel_dir, dest = pathlib.Path(wheel_dir), pathlib.Path(dest)
    version = wheel_req.split("==")[1]
    wheels = sorted(wheel_dir.glob("ansible-%s-*.whl" % version))
    if not wheels:
        subprocess.check_call([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                               "--only-binary=:all:", "-d", str(wheel_dir), wheel_req])
        wheels = sorted(wheel_dir.glob("ansible-%s-*.whl" % version))
    prefixes = tuple("ansible_collections/%s/" % name.replace(".", "/") for name in collections)
    with zipfile.ZipFile(wheels[0]) as wheel:
        members = [m for m in wheel.namelist() if m.startswith(prefixes)]
        wheel.extractall(dest, members)
    print("vendored %s from %s into %s" % (", ".join(collections), wheels[0].name, dest))


if __name__ == "__main__":
    main(*sys.argv[1:])

"""Stand-in for ansible-test's get-pip bootstrap script, whose download host is out of reach here and in CI.

ansible-test runs it inside a fresh venv with pip's options and the pinned pip as arguments.
"""
import subprocess
import sys

GET_PIP_ONLY_OPTIONS = ("--no-setuptools", "--no-wheel")

subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
subprocess.check_call([sys.executable, "-m", "pip", "install"] + [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_OPTIONS])

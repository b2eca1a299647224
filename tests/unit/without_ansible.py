"""Python source that makes ansible-core unimportable, for scripts that run host-side code as a host without it.

Tests start ``python -c BLOCK_ANSIBLE + <their script>``: any ``import ansible...`` then fails as it would on a
managed host that has only Debian's Python packages.
"""
BLOCK_ANSIBLE = """\
import sys


class NoAnsible(object):
    def find_spec(self, name, path=None, target=None):
        if name == "ansible" or name.startswith("ansible."):
            raise ImportError("ansible-core is not installed on this host: " + name)


sys.meta_path.insert(0, NoAnsible())
"""

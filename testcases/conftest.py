"""The Key Locker catalogue runs through the klharness pytest plugin (harness/plugin.py),
registered by the package's pytest11 entry point: install the package (tox does) to use it."""

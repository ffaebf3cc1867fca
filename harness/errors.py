"""The one error hierarchy of klharness.

Library code raises these; only the CLI (``harness.cli``) and the pytest
plugin (``harness.plugin``) turn them into exit codes, skips or usage errors.
Every message should say what was wrong, where (file, line, field, guest) and
how to fix it.

::

    KlharnessError
    ├── ConfigError            a config or profile file is wrong (file:line: field: ...)
    ├── ProbeOutputError       the probe's JSON is malformed, truncated or of another version
    ├── BuildError             compiling the probe/emulator or building an image failed
    ├── ImageError             a guest image is missing, corrupt or cannot be built
    ├── HostError              the host lacks something (daemon down, package missing, port taken)
    │   └── CapabilityError    the host cannot give what a cell asks for (a skip, not a failure)
    ├── VirtError              libvirt refused or failed an operation on a domain
    │   └── MigrationRefused   the stack would not migrate this guest (a blocker, not a failure)
    ├── GuestError             a guest misbehaved (no boot progress, panic, bad answer)
    │   └── SSHError           SSH to a guest failed (connect, auth, host key, exec)
    └── CommandError           a local command failed or timed out (harness.proc)
        └── CommandTimeout
"""

from __future__ import annotations


class KlharnessError(Exception):
    """Base of every error klharness raises on purpose."""


class ConfigError(KlharnessError):
    """A configuration or profile file is invalid."""


class ProbeOutputError(KlharnessError):
    """The probe's output document cannot be trusted as an observation record."""


class BuildError(KlharnessError):
    """Compiling C sources or assembling an artefact failed."""


class ImageError(KlharnessError):
    """A guest image is missing, corrupt or cannot be built."""


class HostError(KlharnessError):
    """The host is missing something the harness needs."""


class CapabilityError(HostError):
    """The host cannot provide what a cell asks for; callers turn this into a skip."""


class VirtError(KlharnessError):
    """libvirt refused or failed an operation."""


class MigrationRefused(VirtError):
    """libvirt or QEMU refused to migrate a guest (e.g. a migration blocker); the guest stays on the source."""


class GuestError(KlharnessError):
    """A guest did not behave: no boot progress, a panic, a malformed answer."""


class SSHError(GuestError):
    """Connecting to, authenticating with, or running a command in a guest over SSH failed."""


class CommandError(KlharnessError):
    """A local command exited non-zero (when the caller asked for success)."""


class CommandTimeout(CommandError):
    """A local command ran past its timeout and its process group was killed."""

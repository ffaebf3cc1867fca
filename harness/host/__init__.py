"""The host a run uses, read and never changed: its facts (``facts``), the host check with its CPUID,
kernel, KVM, QEMU and libvirt findings (``check``), the verdicts of what can run there (``verdict``),
and the probe run on the host itself (``localprobe``).  A remote host is reached over SSH as its URI says
(``link``: commands there, and channels to its loopback for the guests' SSH), and its facts are read on it
(``remote_facts``, with the parsers ``factparse`` shares with the local reader)."""

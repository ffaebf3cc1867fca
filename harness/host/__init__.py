"""The host a run uses, read and never changed: its facts (``facts``), the host check with its CPUID,
kernel, KVM, QEMU and libvirt findings (``check``), the verdicts of what can run there (``verdict``),
and the probe run on the host itself (``localprobe``)."""

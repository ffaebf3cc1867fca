"""Virtual machine monitors the harness can run guests on.

``system`` is the distribution's QEMU (libvirt's default emulator); ``qemu-kl``
(:mod:`harness.vmm.qemu_kl`) is that QEMU with klharness's Key Locker patches,
whose TCG executes Key Locker, built once per machine from the distribution's
source package.
"""

"""klharness: what really happens when a virtual machine uses Intel Key Locker."""

__version__ = "0.1.0"

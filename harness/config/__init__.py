"""Configuration: YAML matrices and expectation profiles, loaded into frozen objects.

Errors read ``configs/ci.yaml:12: guests[0].memory: '2 GB' is not a size (use 2G or 2048M)``.
"""

from harness.config.loader import load_config
from harness.config.model import Config, GuestConfig, KlConfig, RunSettings

__all__ = ["Config", "GuestConfig", "KlConfig", "RunSettings", "load_config"]

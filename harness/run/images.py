"""The run's guest images: each built (or found in the cache) once, staged once per host that needs it.

Why apart from the pool: building and staging are per image and per host, not per guest; two
guests of one image on one host share one build and one staged copy, and both steps go into the
record (``images``, ``staged_images``) with what they cost.
"""

from __future__ import annotations

import threading
import time

from harness.config.model import Config
from harness.guest.probeguest import RunContext
from harness.images import build_image
from harness.images.artifact import ImageArtifact
from harness.results.record import RunRecorder
from harness.virt.storage import stage_image


class RunImages:
    """Images by name, and their staged copies by ``host/name``."""

    def __init__(self, config: Config, recorder: RunRecorder) -> None:
        self.config = config
        self.recorder = recorder
        self._lock = threading.Lock()  # guards the dicts; background boots ask concurrently
        self._building: dict[str, threading.Lock] = {}  # one per image: two images build side by side
        self._built: dict[str, ImageArtifact] = {}
        self._staged: dict[str, ImageArtifact] = {}

    def image(self, name: str) -> ImageArtifact:
        """The built image ``name`` (cached across runs by harness.images, and here within one run)."""
        with self._lock:
            building = self._building.setdefault(name, threading.Lock())
        with building:
            if name not in self._built:
                start = time.monotonic()
                artifact = build_image(name, options=self.config.image_options.get(name))
                took = round(time.monotonic() - start, 2)
                self._built[name] = artifact
                self.recorder.update(lambda d: d.setdefault("images", {}).update(
                    {name: {"key": artifact.key, "seconds": took}}))
            return self._built[name]

    def for_host(self, name: str, host: str, ctx: RunContext) -> ImageArtifact:
        """The image as ``host`` sees it: staged through its storage pool when it cannot read ours."""
        image = self.image(name)
        if ctx.stage is None:
            return image
        key = f"{host}/{name}"
        with self._lock:  # staging is rare (remote hosts) and cheap next to a boot: one at a time
            if key not in self._staged:
                start = time.monotonic()
                self._staged[key] = stage_image(ctx.conn, image)
                took = round(time.monotonic() - start, 2)
                self.recorder.update(lambda d: d.setdefault("staged_images", {}).update({key: took}))
            return self._staged[key]

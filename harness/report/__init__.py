"""Reports from run records, for three readers.

- ``html``: one self-contained page (inline CSS and SVG, nothing fetched) that a lab lead reads in a
  minute: counts, the failures with their reasons, a guest × check matrix, plots, per-test detail.
- ``markdown``: a short summary for CI comments and mail.
- ``compare``: what changed between two runs (regressions, fixes, provenance, performance judged
  against its own noise), with ``known_issues`` keeping known intermittent failures out of the tally.
- ``history``: the last N runs of a results directory per test and per figure (flakes, drift).
- ``kcidb``: the run as KCIDB JSON, for KernelCI's common results database.

``reproduce`` gives each failure the command that runs that cell alone (all three summaries show it).

``model`` holds the read-only views over a record that all of them share; ``svg`` draws the charts.
"""

from __future__ import annotations

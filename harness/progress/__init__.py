"""Live progress of a run: typed events in, a terminal board or a plain log out.

Why events and not output parsing: the session and the plugin know exactly when a guest starts
its image, boot, SSH, probe or lifecycle event and how each cell ended; they say so through a
:class:`~harness.progress.events.Progress` object passed in (a no-op by default), and whatever
shows progress only renders what it was told.

- ``events``: the event types, the ``Progress`` protocol and the no-op default (import-light:
  the session and guest boot code import it);
- ``board``: the run's state built from events (one line per guest, totals), and its wording;
- ``plain``: one line per event, for logs and CI (stdout not a terminal);
- ``live``: the board redrawn in place on a terminal (``rich``);
- ``display``: which of the two for this stdout, written to a duplicate of the terminal's fd;
- ``pytest_plugin``: hands the display to harness.plugin and keeps pytest's per-test letters
  off the screen while it is shown.
"""

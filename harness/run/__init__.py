"""A run in progress, one job per module: ``session`` composes the run and tears it down in
order; ``hosts`` connects and checks each host and places guests on them; ``images`` builds and
stages the guest images; ``pool`` boots, shares and releases the guests; ``artifacts`` is what is
kept of each guest; ``hooks`` are the pytest hooks klharness adds.  The pytest glue itself is
``harness.plugin``, the entry point pytest loads."""

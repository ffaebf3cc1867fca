"""A run in progress: the session that boots and pools the guests and tears it all down
(``session``), the hosts it connects and places guests on (``hosts``), and the pytest hooks
klharness adds (``hooks``); the pytest glue itself is ``harness.plugin``, the entry point pytest
loads."""

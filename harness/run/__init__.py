"""A run in progress: the session that connects the hosts, boots and pools the guests and tears it
all down (``session``), and the pytest hooks klharness adds (``hooks``); the pytest glue itself is
``harness.plugin``, the entry point pytest loads."""

"""The one-command demo (``make demo``); not part of the wheel: it runs the example DAGs of a checkout."""

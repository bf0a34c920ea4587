"""The control plane: prepare a database (``setup``), check it (``checks``), watch the slot
(``lag``, ``slot_watch``, ``heartbeat``), the daemon's role (``roles``), the store's partitions."""

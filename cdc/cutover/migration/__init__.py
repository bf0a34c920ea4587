"""Moving tables from audit triggers to CDC, and back (``cdc triggers ...``; docs/migration.md).

The steps, each a module:

* :mod:`cdc.cutover.triggers` knows the triggers: which are audit triggers, and the statements that
  recreate one exactly;
* :mod:`.backup` saves them (a SQL file, and a copy with a checksum in the source database);
* :mod:`cdc.cutover.verify` compares, while both run ("shadow mode"), the legacy audit rows with the
  activity records;
* :mod:`.switch` cuts a table over to CDC (or rolls it back) in one transaction that also emits
  a ``cdc.cutover`` logical message, so that the stream says exactly where the switch is;
* :mod:`.drop` removes the disabled audit triggers after a soak period;
* :mod:`.status` says where each table is.

What they keep lives in the source database, in the activity schema (:mod:`.store`).
"""

"""Moving tables from audit triggers to CDC and back: the triggers, the migration steps, and
shadow verification of one side against the other (docs/migration.md)."""

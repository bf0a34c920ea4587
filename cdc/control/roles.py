"""The least-privilege role for the daemon (``cdc setup --print-role-sql``).

What the daemon does, and what each part needs (verified on PostgreSQL 15 by
``tests/integration/test_ops.py``):

* the replication connection (``START_REPLICATION ... pgoutput``): ``LOGIN REPLICATION``.
  Streaming through a publication checks no privilege on the published tables; SELECT is only
  needed for a subscriber's initial table copy, which activity-cdc never does. So the role gets
  no SELECT on the source tables, and no USAGE on their schemas.
* heartbeats (``[daemon] heartbeat_interval_s`` > 0): ``EXECUTE`` on the text variant of
  ``pg_logical_emit_message``, which a superuser's ``cdc setup`` revokes from PUBLIC
  (sql/emit_message_revoke.sql), so it is granted to the role. Its signature differs by
  version (17 added ``flush``: cdc.logical_messages), so the script grants it by name
  (sql/emit_message_grant.sql), not by a spelled-out signature.
* the control queries (``pg_replication_slots``, ``pg_publication``, ``pg_index``,
  ``pg_current_wal_insert_lsn()``): nothing; the catalogs and these functions are public.
* the sink: ``USAGE`` on the activity schema, ``INSERT`` on the records table (COPY names its
  columns; ``recorded_at`` is filled by its ``now()`` default, which needs nothing; the
  records table is partitioned, and the grant on the parent covers the partitions), and
  ``SELECT, INSERT, UPDATE`` on ``checkpoints`` and on the two rollup tables
  ``activity_per_minute`` / ``activity_per_hour`` (upserts whose SET or WHERE reads the stored
  row).

``cdc setup`` itself is not run with this role: creating the publication and setting REPLICA
IDENTITY need the owner of the tables.

``cdc ingest`` gets its own role (``--print-role-sql --ingest``): no REPLICATION and nothing on
any source, only the store (:func:`ingest_privileges`).
"""

from __future__ import annotations

from psycopg import sql

from cdc.config import Settings
from cdc.dsn import describe_target
from cdc.sqlfiles import sql_text

DEFAULT_ROLE = "activity_cdc"


def sink_privileges(settings: Settings) -> list[tuple[str, str, tuple[str, ...]]]:
    """(schema, table, privileges) the daemon's sink session needs, besides USAGE on the
    schema. One list for the role's SQL and for ``cdc check``: a sink that starts writing
    another table adds it here."""
    schema = settings.sink.schema_name
    upsert = ("SELECT", "INSERT", "UPDATE")  # ON CONFLICT DO UPDATE reading the stored row
    privileges = [
        (schema, settings.sink.table_name, ("INSERT",)),
        (schema, "checkpoints", upsert),
        (schema, "activity_per_minute", upsert),  # rollups, in the records' transaction
        (schema, "activity_per_hour", upsert),
        (schema, "capture_modes", upsert),  # cutover markers move a table's mode
    ]
    if settings.sink.hash_chain:
        # the chain's head: read FOR UPDATE, then moved, with every batch
        privileges.append((schema, f"{settings.sink.table_name}_chain_head", ("SELECT", "UPDATE")))
    if settings.sink.on_refused == "dead_letter":
        # INSERT to park; SELECT so that `cdc check` as this role can count what is parked
        privileges.append((schema, "dead_letters", ("SELECT", "INSERT")))
    return privileges


# What heartbeats call on the source. `cdc setup` (as a superuser) revokes it from PUBLIC, so
# that no role can forge a transaction context; the daemon's role then needs its own grant.
# By name: the signature depends on the server version (cdc.logical_messages).
EMIT_MESSAGE = "pg_catalog.pg_logical_emit_message"


def source_functions(settings: Settings) -> list[str]:
    """Functions the daemon calls on the source (EXECUTE), for the role's SQL and ``cdc check``."""
    return [EMIT_MESSAGE] if settings.daemon.heartbeat_interval_s > 0 else []


def emit_message_grant(role: str) -> str:
    """The statement that grants ``role`` EXECUTE on pg_logical_emit_message's text variant,
    whatever the server's version (a DO block that finds its signature in pg_proc)."""
    return (
        sql.SQL(sql_text("emit_message_grant.sql"))
        .format(role=sql.Literal(sql.Identifier(role).as_string()))
        .as_string()
        .strip()
    )


def role_sql(settings: Settings, role: str = DEFAULT_ROLE) -> str:
    """A SQL script that creates ``role`` with exactly what the daemon needs."""
    name = sql.Identifier(role).as_string()
    schema = sql.Identifier(settings.sink.schema_name).as_string()
    source = describe_target(settings.source.dsn)
    sink = describe_target(settings.sink_dsn)
    same = settings.sink_dsn == settings.source.dsn
    lines = [
        f"-- Least-privilege role for the activity-cdc daemon (cdc run) on {source}.",
        "-- Run as a superuser (or a role with CREATEROLE), after cdc setup (which runs as the",
        "-- owner of the tables and creates the activity store).",
        f"CREATE ROLE {name} LOGIN REPLICATION;",
        f"-- Then give it a password (psql: \\password {role}) and allow it in pg_hba.conf",
        "-- (a logical replication connection matches the database name there, not the",
        "-- 'replication' keyword, which is for physical replication).",
        "-- Source: streaming through the publication needs only REPLICATION; PostgreSQL checks",
        "-- no SELECT on published tables except for an initial table copy, which activity-cdc",
        "-- never does.",
    ]
    if source_functions(settings):
        lines += [
            "-- Heartbeats ([daemon] heartbeat_interval_s) call pg_logical_emit_message(), which",
            "-- cdc setup (as a superuser) revokes from PUBLIC:",
        ]
    else:
        lines += [
            "-- Heartbeats are off ([daemon] heartbeat_interval_s = 0); when you turn them on,",
            "-- print this script again: it then grants EXECUTE on pg_logical_emit_message().",
        ]
    if source_functions(settings):
        lines.append(emit_message_grant(role) + ";")
    lines += [
        "",
        "-- Sink ("
        + (
            "the same database):"
            if same
            else f"{sink}): connect to it first; create the role there too if it is another server:"
        ),
        f"GRANT USAGE ON SCHEMA {schema} TO {name};",
    ]
    return _script(lines, sink_privileges(settings), name)


def _script(lines: list[str], privileges: list[tuple[str, str, tuple[str, ...]]], name: str) -> str:
    """``lines``, the GRANT of each table's ``privileges`` to ``name``, and the CONNECT note."""
    for table_schema, table, grants in privileges:
        target = sql.SQL("{}.{}").format(sql.Identifier(table_schema), sql.Identifier(table))
        lines.append(f"GRANT {', '.join(grants)} ON TABLE {target.as_string()} TO {name};")
    lines += [
        "-- CONNECT on a database is granted to PUBLIC by default; if you revoked it:",
        f"-- GRANT CONNECT ON DATABASE <name> TO {name};",
    ]
    return "\n".join(lines) + "\n"


INGEST_ROLE = "activity_cdc_ingest"


def ingest_privileges(settings: Settings) -> list[tuple[str, str, tuple[str, ...]]]:
    """(schema, table, privileges) ``cdc ingest`` needs in the store, besides USAGE on the
    schema: what the sink writes with the records (rollups, cutover markers, the chain's head,
    dead letters), minus the daemon's checkpoint (ingest's position is the stream's), plus
    SELECT on the records (a record the stream holds twice is looked up before it is written),
    the claimed stream sequences and the consumer's floor, and the migration log (ingest
    checks that the store is current when it starts; migrating it needs the store's owner)."""
    schema = settings.sink.schema_name
    privileges = [
        (s, table, ("SELECT", "INSERT") if table == settings.sink.table_name else grants)
        for s, table, grants in sink_privileges(settings)
        if table != "checkpoints"
    ]
    privileges += [
        (schema, "ingested", ("SELECT", "INSERT", "DELETE")),  # claimed; pruned below the floor
        (schema, "ingest_positions", ("SELECT", "INSERT", "UPDATE")),
        (schema, "schema_migrations", ("SELECT",)),
    ]
    return privileges


def ingest_role_sql(settings: Settings, role: str = INGEST_ROLE) -> str:
    """A SQL script that creates ``role`` with exactly what ``cdc ingest`` needs in the store
    (run it in the store's database: ``cdc ingest --to DSN``)."""
    name = sql.Identifier(role).as_string()
    schema = sql.Identifier(settings.sink.schema_name).as_string()
    lines = [
        "-- Least-privilege role for cdc ingest (JetStream -> the activity store). Run it as a",
        "-- superuser (or a role with CREATEROLE) in the store's database (cdc ingest --to DSN),",
        "-- after the store exists (cdc setup, or a first cdc ingest as the store's owner: later",
        "-- migrations need the owner too). It reads and writes the store, and nothing else.",
        f"CREATE ROLE {name} LOGIN;",
        f"-- Then give it a password (psql: \\password {role}) and use its DSN in --to.",
        f"GRANT USAGE ON SCHEMA {schema} TO {name};",
    ]
    return _script(lines, ingest_privileges(settings), name)


READER_ROLE = "activity_cdc_reader"


def reader_privileges(settings: Settings) -> list[tuple[str, str]]:
    """(schema, table) the web server's reader selects from: the records, the rollups, and
    what the dashboard's health shows (checkpoint, chain head and verifications, dead
    letters). Nothing else,
    and nothing but SELECT."""
    schema = settings.sink.schema_name
    tables = [
        (schema, settings.sink.table_name),
        (schema, "activity_per_minute"),
        (schema, "activity_per_hour"),
        (schema, "activity_per_day"),
        (schema, "checkpoints"),
        (schema, "dead_letters"),
    ]
    if settings.sink.hash_chain:
        tables.append((schema, f"{settings.sink.table_name}_chain_head"))
        tables.append((schema, "chain_verifications"))
    return tables


def reader_role_sql(settings: Settings, role: str = READER_ROLE) -> str:
    """A SQL script that creates ``role``, which may only read the activity store: the role
    of ``cdc serve`` ([web] dsn)."""
    name = sql.Identifier(role).as_string()
    schema = sql.Identifier(settings.sink.schema_name).as_string()
    lines = [
        f"-- Read-only role for the activity monitor and dashboard (cdc serve) on "
        f"{describe_target(settings.sink_dsn)}.",
        "-- Run as a superuser (or a role with CREATEROLE), after cdc setup. It can read the",
        "-- activity store and its rollups, and write nothing.",
        f"CREATE ROLE {name} LOGIN;",
        f"-- Then give it a password (psql: \\password {role}) and put its DSN in [web] dsn or",
        "-- CDC_WEB_DSN.",
        f"GRANT USAGE ON SCHEMA {schema} TO {name};",
    ]
    for table_schema, table in reader_privileges(settings):
        target = sql.SQL("{}.{}").format(sql.Identifier(table_schema), sql.Identifier(table))
        lines.append(f"GRANT SELECT ON TABLE {target.as_string()} TO {name};")
    lines += [
        "-- The full-text search functions of the store are executable by PUBLIC (the default);",
        "-- the lag shown on the dashboard reads pg_replication_slots, which PUBLIC may read.",
        "-- CONNECT on a database is granted to PUBLIC by default; if you revoked it:",
        f"-- GRANT CONNECT ON DATABASE <name> TO {name};",
    ]
    return "\n".join(lines) + "\n"

"""Operations on a real PostgreSQL: setup's plan and dry run, the publication following the
config, the least-privilege role running the daemon, every check of ``cdc check`` and its
failure, ``cdc lag --watch``, ``cdc teardown``, and shell completion."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from cdc.cli.main import main
from cdc.config import settings_from_mapping
from cdc.control.roles import emit_message_grant, role_sql
from cdc.control.setup import migration_files
from cdc.demo.embedded import EmbeddedPostgres
from cdc.logical_messages import text_signature
from tests.fix_pg import PgDatabase

integration = pytest.mark.integration


def write_config(
    path: Path,
    *,
    dsn: str,
    slot: str = "activity_cdc",
    publication: str = "activity_cdc",
    tables: Sequence[str] = ("public.t",),
) -> Path:
    text = (
        f"[source]\ndsn = '{dsn}'\nslot = '{slot}'\npublication = '{publication}'\n"
        "[batch]\nmax_rows = 100\nmax_delay_ms = 20\n"
    )
    for name in tables:
        text += f"[[tables]]\nname = '{name}'\n"
    path.write_text(text)
    return path


def cdc(
    config: Path, *args: str, env: dict[str, str] | None = None, input: str | None = None
) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args], env=env, input=input)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.fixture
def config(pg: PgDatabase, tmp_path: Path) -> Path:
    pg.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    return write_config(tmp_path / "cdc.toml", dsn=pg.dsn, slot=pg.slot, publication=pg.publication)


def lines_of(out: str, prefix: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(prefix)]


def check_line(out: str, name: str) -> str:
    """The line of one check (``ok   wal_level = logical`` / ``FAIL slot: ...``)."""
    found = [
        line
        for line in out.splitlines()
        if line[5:].startswith(f"{name}:") or line[5:].startswith(f"{name} ")
    ]
    assert len(found) == 1, (name, out)
    return found[0]


def published(pg: PgDatabase) -> set[str]:
    return {
        f"{schema}.{table}"
        for schema, table in pg.execute(
            "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s",
            (pg.publication,),
        )
    }


def slot_exists(pg: PgDatabase) -> bool:
    return bool(pg.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (pg.slot,)))


# -- setup -----------------------------------------------------------------------------------


@integration
def test_setup_dry_run_prints_the_exact_sql_and_changes_nothing(
    pg: PgDatabase, config: Path
) -> None:
    code, out = cdc(config, "setup", "--dry-run")
    assert code == 0, out
    assert f'CREATE PUBLICATION "{pg.publication}" FOR TABLE "public"."t"' in out
    assert 'ALTER TABLE "public"."t" REPLICA IDENTITY FULL;' in out
    assert f"pg_create_logical_replication_slot('{pg.slot}', 'pgoutput')" in out
    for _version, name in migration_files():
        assert f"VALUES ({int(name[:4])}, '{name}');" in out
    assert out.rstrip().endswith("-- dry run: nothing was changed")
    assert not slot_exists(pg)
    assert pg.execute("SELECT count(*) FROM pg_publication")[0][0] == 0
    assert pg.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'activity'")[0][0] == 0
    assert pg.execute("SELECT relreplident::text FROM pg_class WHERE relname = 't'")[0][0] == "d"


@integration
def test_setup_shows_its_plan_before_applying_it_and_then_has_nothing_to_do(
    pg: PgDatabase, config: Path
) -> None:
    code, out = cdc(config, "setup")
    assert code == 0, out
    # migration log, migrations, publication, RI, context functions, PUBLIC's EXECUTE on
    # pg_logical_emit_message, capture modes, slot
    steps = 1 + len(migration_files()) + 6
    assert f"plan: {steps} step(s)" in out
    lines = out.splitlines()
    first_done = next(i for i, line in enumerate(lines) if line.startswith("done:"))
    assert lines.index(f"plan: {steps} step(s)") < first_done
    assert len(lines_of(out, "done:")) == steps
    assert "changes are captured from" in lines_of(out, "done:")[-1]
    code, out = cdc(config, "setup")
    assert code == 0 and "nothing to do" in out and "plan:" not in out
    code, out = cdc(config, "setup", "--dry-run")
    assert code == 0 and "-- cdc setup: 0 step(s)" in out


@integration
def test_migrations_are_applied_once_and_recorded(pg: PgDatabase, config: Path) -> None:
    assert cdc(config, "setup")[0] == 0
    query = "SELECT version, name, applied_at FROM activity.schema_migrations ORDER BY version"
    applied = pg.execute(query)
    assert [(version, name) for version, name, _ in applied] == migration_files()
    pg.execute(f"SELECT pg_drop_replication_slot('{pg.slot}')")  # give setup work to do
    code, out = cdc(config, "setup")
    assert code == 0 and "plan: 1 step(s)" in out
    assert pg.execute(query) == applied


@integration
def test_setup_adds_and_removes_tables_of_the_publication_as_the_config_changes(
    pg: PgDatabase, tmp_path: Path
) -> None:
    pg.execute("CREATE TABLE t1 (id int PRIMARY KEY); CREATE TABLE t2 (id int PRIMARY KEY)")
    pg.execute("CREATE TABLE t3 (id int PRIMARY KEY)")
    path = tmp_path / "cdc.toml"
    names = {"dsn": pg.dsn, "slot": pg.slot, "publication": pg.publication}
    write_config(path, **names, tables=("public.t1", "public.t2"))
    assert cdc(path, "setup")[0] == 0
    assert published(pg) == {"public.t1", "public.t2"}

    write_config(path, **names, tables=("public.t1", "public.t3"))
    code, out = cdc(path, "setup", "--dry-run")
    assert code == 0
    assert f"publication {pg.publication}: add public.t3; remove public.t2" in out
    assert f'ALTER PUBLICATION "{pg.publication}" SET TABLE "public"."t1", "public"."t3";' in out
    assert published(pg) == {"public.t1", "public.t2"}  # the dry run changed nothing

    code, out = cdc(path, "setup")
    assert code == 0, out
    assert published(pg) == {"public.t1", "public.t3"}
    assert "added 1 table(s), removed 1" in out
    assert pg.execute("SELECT relreplident::text FROM pg_class WHERE relname = 't3'") == [("f",)]
    assert cdc(path, "setup")[1].strip().endswith("nothing to do: everything was already set up")


@integration
def test_setup_restores_the_operations_the_publication_publishes(
    pg: PgDatabase, config: Path
) -> None:
    assert cdc(config, "setup")[0] == 0
    pg.execute(f"ALTER PUBLICATION \"{pg.publication}\" SET (publish = 'insert')")
    code, out = cdc(config, "check")
    assert code == 6
    assert "does not publish update, delete, truncate operations" in check_line(out, "publication")
    code, out = cdc(config, "setup")
    assert code == 0 and "publishes insert, update, delete, truncate" in out
    assert cdc(config, "check")[0] == 0


# -- the least-privilege role ------------------------------------------------------------------


@pytest.fixture
def role(pg: PgDatabase) -> Iterator[str]:
    """A role name for the test; the role is dropped with everything granted to it."""
    name = f"cdc_role_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(pg.server.dsn, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,)
        )
        exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
    if exists:
        with pg.connect() as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_role_sql_creates_a_replication_role_with_only_the_sink_grants(tmp_path: Path) -> None:
    settings = settings_from_mapping(
        {"source": {"dsn": "host=db dbname=app"}, "tables": [{"name": "public.t"}]}, env={}
    )
    statements = [
        line for line in role_sql(settings, "cdc_daemon").splitlines() if not line.startswith("--")
    ]
    assert [s for s in statements if s] == [
        'CREATE ROLE "cdc_daemon" LOGIN REPLICATION;',
        'GRANT USAGE ON SCHEMA "activity" TO "cdc_daemon";',
        'GRANT INSERT ON TABLE "activity"."records" TO "cdc_daemon";',
        'GRANT SELECT, INSERT, UPDATE ON TABLE "activity"."checkpoints" TO "cdc_daemon";',
        'GRANT SELECT, INSERT, UPDATE ON TABLE "activity"."activity_per_minute" TO "cdc_daemon";',
        'GRANT SELECT, INSERT, UPDATE ON TABLE "activity"."activity_per_hour" TO "cdc_daemon";',
        'GRANT SELECT, INSERT, UPDATE ON TABLE "activity"."capture_modes" TO "cdc_daemon";',
        'GRANT SELECT, UPDATE ON TABLE "activity"."records_chain_head" TO "cdc_daemon";',
    ]


def test_role_sql_grants_the_dead_letters_and_drops_the_chain_head_only_as_configured() -> None:
    base = {"source": {"dsn": "host=db dbname=app"}, "tables": [{"name": "public.t"}]}
    parking = settings_from_mapping(
        {**base, "sink": {"on_refused": "dead_letter", "hash_chain": False}}, env={}
    )
    text = role_sql(parking, "cdc_daemon")
    assert 'GRANT SELECT, INSERT ON TABLE "activity"."dead_letters" TO "cdc_daemon";' in text
    assert "records_chain_head" not in text and "TEMPORARY" not in text
    default = role_sql(settings_from_mapping(base, env={}), "cdc_daemon")
    assert "dead_letters" not in default and "records_chain_head" in default


def test_role_sql_for_a_sink_in_another_database_says_where_the_grants_go() -> None:
    settings = settings_from_mapping(
        {
            "source": {"dsn": "host=db dbname=app"},
            "sink": {"dsn": "host=audit dbname=records", "table": "audit.log"},
            "tables": [{"name": "public.t"}],
        },
        env={},
    )
    text = role_sql(settings)
    assert "-- Sink (audit:5432/records): connect to it first" in text
    assert 'GRANT INSERT ON TABLE "audit"."log" TO "activity_cdc";' in text


@integration
@pytest.mark.every_server
def test_the_least_privilege_role_runs_the_daemon_end_to_end_and_can_do_nothing_else(
    pg: PgDatabase, config: Path, role: str
) -> None:
    pg.execute("CREATE TABLE other (id int PRIMARY KEY, secret text)")
    assert cdc(config, "setup")[0] == 0  # as the owner of the tables
    code, role_script = cdc(config, "setup", "--print-role-sql", "--role", role)
    assert code == 0
    pg.execute(role_script)
    pg.execute("INSERT INTO t SELECT g, 'v' FROM generate_series(1, 40) g")
    pg.execute("UPDATE t SET v = 'w' WHERE id <= 10")

    limited = {"CDC_SOURCE_DSN": pg.server.dsn_for(pg.name, user=role)}
    code, out = cdc(config, "run", "--drain", env=limited)
    assert code == 0, out
    assert pg.execute("SELECT operation, count(*) FROM activity.records GROUP BY 1 ORDER BY 1") == [
        ("insert", 40),
        ("update", 10),
    ]
    code, out = cdc(config, "check", env=limited)
    assert code == 0, out
    assert f"ok   role {role} has REPLICATION" in out
    assert f"ok   {role} may write records, checkpoints and rollups" in out
    code, out = cdc(config, "lag", "--json", env=limited)
    assert code == 0 and json.loads(out)["last_recorded_commit_at"] is not None

    # Exactly these table privileges, nothing else in the database:
    grants = pg.execute(
        "SELECT c.relname, a.privilege_type FROM pg_class c "
        "CROSS JOIN LATERAL aclexplode(c.relacl) a "
        "WHERE a.grantee = %s::regrole ORDER BY 1, 2",
        (role,),
    )
    assert {(table, privilege) for table, privilege in grants} == {
        ("records", "INSERT"),
        ("checkpoints", "INSERT"),
        ("checkpoints", "SELECT"),
        ("checkpoints", "UPDATE"),
        ("activity_per_minute", "SELECT"),
        ("activity_per_minute", "INSERT"),
        ("activity_per_minute", "UPDATE"),
        ("activity_per_hour", "SELECT"),
        ("activity_per_hour", "INSERT"),
        ("activity_per_hour", "UPDATE"),
        ("capture_modes", "SELECT"),
        ("capture_modes", "INSERT"),
        ("capture_modes", "UPDATE"),
        ("records_chain_head", "SELECT"),  # the hash chain's head, moved with every batch
        ("records_chain_head", "UPDATE"),
    }
    with psycopg.connect(pg.server.dsn_for(pg.name, user=role), autocommit=True) as conn:
        for statement in (
            "SELECT * FROM other",
            "SELECT * FROM t",
            "SELECT * FROM activity.records",
            "UPDATE activity.records SET summary = 'forged'",
            "DELETE FROM activity.records",
            "DELETE FROM activity.checkpoints",
            "DELETE FROM activity.records_chain_head",
            "INSERT INTO t VALUES (1000, 'x')",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


@integration
def test_setup_as_the_limited_role_names_every_missing_privilege_with_exit_5(
    pg: PgDatabase, config: Path, role: str
) -> None:
    pg.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    pg.execute(sql.SQL("REVOKE CREATE ON DATABASE {} FROM PUBLIC").format(sql.Identifier(pg.name)))
    code, out = cdc(config, "setup", env={"CDC_SOURCE_DSN": pg.server.dsn_for(pg.name, user=role)})
    assert code == 5, out
    assert out == (
        f"error: cdc setup as role {role} lacks ownership of table public.t (to publish it and "
        f"set REPLICA IDENTITY FULL); CREATE on database {pg.name} (to create the publication); "
        f"REPLICATION (to create the replication slot); CREATE on database {pg.name} (to create "
        "schema activity); run cdc setup as the owner of the tables and of the activity store "
        '(or a superuser); a role made by "cdc setup --print-role-sql" is only for cdc run, '
        "check and lag\n"
    )
    assert not slot_exists(pg)


@integration
def test_setup_and_teardown_as_the_daemon_role_after_a_superuser_setup_exit_5(
    pg: PgDatabase, config: Path, role: str
) -> None:
    assert cdc(config, "setup")[0] == 0
    pg.execute(cdc(config, "setup", "--print-role-sql", "--role", role)[1])
    limited = {"CDC_SOURCE_DSN": pg.server.dsn_for(pg.name, user=role)}
    for args in (["setup"], ["setup", "--dry-run"]):
        code, out = cdc(config, *args, env=limited)
        assert code == 5, out
        assert out.startswith(
            f"error: cdc setup as role {role} lacks ownership of table public.t (to publish it "
            f"and set REPLICA IDENTITY FULL); ownership of publication {pg.publication} (to "
            "change its tables); ownership of schema activity (to migrate the activity store); "
        )
    code, out = cdc(config, "teardown", "--yes", env=limited)
    assert code == 5
    assert out.splitlines()[-1] == (
        f"error: cdc teardown as role {role}: must be owner of publication {pg.publication}; "
        "run cdc teardown as the role that ran cdc setup (the owner of the tables, or a superuser)"
    )
    assert slot_exists(pg)  # nothing was dropped half way


@integration
@pytest.mark.every_server
def test_heartbeats_as_the_daemon_role_agree_with_its_sql_and_check(
    pg: PgDatabase, config: Path, role: str
) -> None:
    """A superuser's setup revokes pg_logical_emit_message from PUBLIC: the role's SQL grants it
    while heartbeats are on, check tests it, and the heartbeat then works as that role."""
    from cdc.control.heartbeat import HeartbeatEmitter

    assert cdc(config, "setup")[0] == 0
    limited = {"CDC_SOURCE_DSN": pg.server.dsn_for(pg.name, user=role)}
    without = cdc(config, "setup", "--print-role-sql", "--role", role)[1]
    assert "GRANT EXECUTE" not in without
    pg.execute(without)
    beating = config.with_name("beating.toml")
    beating.write_text(config.read_text() + "[daemon]\nheartbeat_interval_s = 5\n")
    code, out = cdc(beating, "check", env=limited)
    assert code == 5
    with pg.connect() as conn:
        signature = text_signature(conn.info.server_version)  # 17 added flush
    assert check_line(out, "heartbeat") == (
        f"FAIL heartbeat: {role} may not execute {signature}, which heartbeats call every 5s; "
        f"GRANT EXECUTE ON FUNCTION {signature} TO {role} (cdc setup --print-role-sql), or set "
        "[daemon] heartbeat_interval_s = 0"
    )
    emitter = HeartbeatEmitter(pg.server.dsn_for(pg.name, user=role), 5)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        emitter.emit_once()
    emitter.stop()

    code, script = cdc(beating, "setup", "--print-role-sql", "--role", role)
    grant = emit_message_grant(role)  # by name, whatever the server's signature
    assert grant + ";" in script
    pg.execute(grant)
    code, out = cdc(beating, "check", env=limited)
    assert code == 0, out
    assert check_line(out, "heartbeat") == (
        f"ok   heartbeat every 5s: {role} may execute pg_logical_emit_message"
    )
    emitter = HeartbeatEmitter(pg.server.dsn_for(pg.name, user=role), 5)
    try:
        assert "/" in emitter.emit_once()
    finally:
        emitter.stop()


# -- check -------------------------------------------------------------------------------------


@integration
@pytest.mark.every_server
def test_check_after_setup_passes_with_one_line_per_check(pg: PgDatabase, config: Path) -> None:
    assert cdc(config, "setup")[0] == 0
    code, out = cdc(config, "check")
    assert code == 0, out
    assert check_line(out, "wal_level") == "ok   wal_level = logical"
    assert check_line(out, "max_replication_slots").startswith("ok   max_replication_slots = ")
    assert check_line(out, "max_wal_senders").startswith("ok   max_wal_senders = ")
    assert check_line(out, "max_slot_wal_keep_size").startswith(
        "warn max_slot_wal_keep_size: -1 (unlimited): a stopped daemon makes the slot keep WAL"
    )
    assert check_line(out, "role") == "ok   role postgres is a superuser " + (
        "(a least-privilege role is better: cdc setup --print-role-sql)"
    )
    assert check_line(out, "the") == "ok   the 1 configured table(s) exist"
    assert check_line(out, "replica") == "ok   replica identity FULL on the 1 table(s)"
    assert check_line(out, "publication") == (
        f"ok   publication {pg.publication} publishes exactly the 1 table(s)"
    )
    assert check_line(out, "context") == (
        "ok   context functions activity.set_context, log, log_now, pre_request exist"
    )
    assert check_line(out, "slot") == (
        f"ok   slot {pg.slot}: logical pgoutput, wal_status reserved, inactive"
    )
    assert check_line(out, "activity").startswith("ok   activity store activity.records: ")
    assert "pg_logical_emit_message" not in out  # setup revoked it from PUBLIC
    assert all(line[:5] in ("ok   ", "warn ") for line in out.splitlines())


@integration
@pytest.mark.every_server
def test_check_names_missing_context_functions_and_grants_and_a_public_emit_message(
    pg: PgDatabase, config: Path, role: str
) -> None:
    pg.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
    config.write_text(config.read_text() + f"[context]\nallowed_roles = ['{role}']\n")
    assert cdc(config, "setup")[0] == 0
    assert cdc(config, "check")[0] == 0
    pg.execute(
        sql.SQL("REVOKE EXECUTE ON FUNCTION activity.log_now(text, text, text, jsonb, text, text,"
                " text, text) FROM {}").format(sql.Identifier(role))
    )  # fmt: skip
    pg.execute(
        "DO $$ DECLARE f regprocedure; BEGIN FOR f IN SELECT oid::regprocedure FROM pg_proc "
        "WHERE proname = 'pg_logical_emit_message' LOOP "
        "EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO PUBLIC', f); END LOOP; END $$"
    )
    code, out = cdc(config, "check")
    assert code == 6, out
    assert check_line(out, "context") == (
        f"FAIL context functions: EXECUTE missing for {role} on activity.log_now; run cdc setup "
        "(it grants [context] allowed_roles and request_roles)"
    )
    pg.execute("DROP FUNCTION activity.set_context(jsonb)")
    code, out = cdc(config, "check")
    assert code == 6, out
    assert check_line(out, "context") == (
        "FAIL context functions: activity.set_context missing in the source; run cdc setup"
    )
    assert cdc(config, "setup")[0] == 0  # puts back what is missing, revokes PUBLIC again
    code, out = cdc(config, "check")
    assert code == 0, out
    assert check_line(out, "context") == (
        "ok   context functions activity.set_context, log, log_now, pre_request exist, "
        "granted to 1 role(s)"
    )
    assert "pg_logical_emit_message" not in out


@integration
def test_check_json_has_every_check_its_status_and_the_exit_code(
    pg: PgDatabase, config: Path
) -> None:
    code, out = cdc(config, "check", "--json")
    assert code == 8  # before setup: the activity store (8) is worse than the slot (6)
    report = json.loads(out)
    assert report["ok"] is False and report["exit_code"] == 8
    by_name = {check["name"]: check for check in report["checks"]}
    assert by_name["wal_level"]["status"] == "ok"
    assert by_name["slot"] == {
        "name": "slot",
        "status": "fail",
        "message": f"{pg.slot} does not exist; run cdc setup",
        "exit_code": 6,
    }
    assert by_name["activity store"]["exit_code"] == 8


@integration
def test_check_names_a_dropped_slot_with_exit_6(pg: PgDatabase, config: Path) -> None:
    assert cdc(config, "setup")[0] == 0
    pg.execute(f"SELECT pg_drop_replication_slot('{pg.slot}')")
    code, out = cdc(config, "check")
    assert code == 6
    assert check_line(out, "slot") == f"FAIL slot: {pg.slot} does not exist; run cdc setup"


@integration
def test_check_names_a_table_missing_from_the_publication(pg: PgDatabase, config: Path) -> None:
    assert cdc(config, "setup")[0] == 0
    pg.execute(f'ALTER PUBLICATION "{pg.publication}" DROP TABLE t')
    code, out = cdc(config, "check")
    assert code == 6
    assert check_line(out, "publication") == (
        f"FAIL publication: {pg.publication} does not publish public.t; run cdc setup"
    )


@integration
def test_check_warns_about_a_published_table_that_is_not_configured(
    pg: PgDatabase, config: Path
) -> None:
    assert cdc(config, "setup")[0] == 0
    pg.execute("CREATE TABLE extra (id int PRIMARY KEY)")
    pg.execute(f'ALTER PUBLICATION "{pg.publication}" ADD TABLE extra')
    code, out = cdc(config, "check")
    assert code == 0
    assert check_line(out, "publication").startswith(
        f"warn publication: {pg.publication} also publishes public.extra, which is not configured"
    )


@integration
def test_check_names_a_table_without_full_replica_identity(pg: PgDatabase, config: Path) -> None:
    assert cdc(config, "setup")[0] == 0
    pg.execute("ALTER TABLE t REPLICA IDENTITY DEFAULT")
    code, out = cdc(config, "check")
    assert code == 6
    assert check_line(out, "replica identity") == (
        "FAIL replica identity: public.t is DEFAULT (updates carry no old row, so no diff); "
        "FULL expected: run cdc setup"
    )
    pg.execute("ALTER TABLE t REPLICA IDENTITY NOTHING")
    assert "public.t has none (the application's UPDATE and DELETE fail" in cdc(config, "check")[1]


@integration
def test_check_names_a_configured_table_that_does_not_exist_with_exit_4(
    pg: PgDatabase, config: Path
) -> None:
    assert cdc(config, "setup")[0] == 0
    pg.execute("DROP TABLE t")
    code, out = cdc(config, "check")
    assert code == 4
    assert check_line(out, "tables") == (
        "FAIL tables: public.t do(es) not exist in the source database; create them or remove "
        "them from [[tables]]"
    )


@integration
def test_check_names_a_dropped_sink_table_and_a_pending_migration_with_exit_8(
    pg: PgDatabase, config: Path
) -> None:
    assert cdc(config, "setup")[0] == 0
    last_version, last_name = migration_files()[-1]
    pg.execute("DELETE FROM activity.schema_migrations WHERE version = %s", (last_version,))
    code, out = cdc(config, "check")
    assert code == 8
    assert check_line(out, "activity store") == (
        f"FAIL activity store: migration(s) {last_name} not applied; run cdc setup"
    )
    pg.execute("DROP TABLE activity.checkpoints")
    code, out = cdc(config, "check")
    assert code == 8
    assert check_line(out, "activity store").startswith(
        "FAIL activity store: activity.checkpoints missing in 127.0.0.1:"
    )


@integration
def test_check_names_a_role_without_replication_and_sink_grants_with_exit_5(
    pg: PgDatabase, config: Path, role: str
) -> None:
    assert cdc(config, "setup")[0] == 0
    pg.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    code, out = cdc(config, "check", env={"CDC_SOURCE_DSN": pg.server.dsn_for(pg.name, user=role)})
    assert code == 5
    assert check_line(out, "role") == (
        f"FAIL role: {role} has neither REPLICATION nor SUPERUSER; ALTER ROLE {role} REPLICATION "
        "(or use the role of cdc setup --print-role-sql)"
    )
    assert check_line(out, "sink privileges") == (
        f"FAIL sink privileges: {role} lacks USAGE on schema activity, INSERT on "
        "activity.records, SELECT on activity.checkpoints, INSERT on activity.checkpoints, "
        "UPDATE on activity.checkpoints, SELECT on activity.activity_per_minute, INSERT on "
        "activity.activity_per_minute, UPDATE on activity.activity_per_minute, SELECT on "
        "activity.activity_per_hour, INSERT on activity.activity_per_hour, UPDATE on "
        "activity.activity_per_hour, SELECT on activity.capture_modes, INSERT on "
        "activity.capture_modes, UPDATE on activity.capture_modes, SELECT on "
        "activity.records_chain_head, UPDATE on activity.records_chain_head; grant them "
        "(cdc setup --print-role-sql)"
    )


@integration
def test_the_worst_failure_decides_the_exit_code(pg: PgDatabase, config: Path) -> None:
    assert cdc(config, "setup")[0] == 0
    pg.execute(f"SELECT pg_drop_replication_slot('{pg.slot}')")  # 6
    pg.execute("DROP TABLE activity.checkpoints")  # 8
    assert cdc(config, "check")[0] == 8
    pg.execute("DROP TABLE t")  # 4
    assert cdc(config, "check")[0] == 4


@integration
def test_check_names_a_slot_that_is_not_a_pgoutput_slot_of_this_database(
    pg: PgDatabase, config: Path
) -> None:
    assert cdc(config, "setup")[0] == 0
    pg.execute(f"SELECT pg_drop_replication_slot('{pg.slot}')")
    pg.execute(f"SELECT pg_create_logical_replication_slot('{pg.slot}', 'test_decoding')")
    code, out = cdc(config, "check")
    assert code == 6
    assert check_line(out, "slot") == (
        f"FAIL slot: {pg.slot} is a logical slot with plugin test_decoding, not a logical "
        "pgoutput slot; choose another [source] slot name"
    )


@integration
def test_check_shows_the_pid_streaming_from_the_slot(pg: PgDatabase, config: Path) -> None:
    assert cdc(config, "setup")[0] == 0
    holder = psycopg.connect(pg.dsn, replication="database", autocommit=True)
    try:
        pid = holder.info.backend_pid
        holder.execute(
            f"START_REPLICATION SLOT \"{pg.slot}\" LOGICAL 0/0 (proto_version '1', "
            f"publication_names '\"{pg.publication}\"')"
        )
        code, out = cdc(config, "check")
        assert code == 0, out
        assert check_line(out, "slot").endswith(f"wal_status reserved, active (pid {pid})")
        code, out = cdc(config, "teardown", "--yes")
        assert code == 6
        assert f'replication slot "{pg.slot}" is in use by pid {pid}; stop the daemon' in out
        assert slot_exists(pg)
    finally:
        holder.close()


@integration
def test_check_on_an_unreachable_server_fails_once_with_exit_5(tmp_path: Path) -> None:
    config = write_config(tmp_path / "cdc.toml", dsn="host=127.0.0.1 port=1 dbname=x user=u")
    code, out = cdc(config, "check")
    assert code == 5
    assert len(out.splitlines()) == 1  # the sink is the same database: not tried twice
    assert out.startswith("FAIL source: cannot connect to the source database 127.0.0.1:1/x")


@integration
def test_check_on_a_server_not_set_up_for_logical_replication(tmp_path: Path) -> None:
    settings = {
        "wal_level": "replica",
        "max_wal_senders": "0",
        "max_replication_slots": "0",
        "max_slot_wal_keep_size": "1GB",
    }
    with EmbeddedPostgres(settings=settings) as server:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        config = write_config(tmp_path / "cdc.toml", dsn=server.dsn)
        code, out = cdc(config, "check")
    assert code == 5
    assert check_line(out, "wal_level") == (
        "FAIL wal_level: replica, need logical; ALTER SYSTEM SET wal_level = logical and restart "
        "the server"
    )
    assert check_line(out, "max_replication_slots") == (
        "FAIL max_replication_slots: 0 of 0 in use and slot activity_cdc does not exist yet; "
        "raise max_replication_slots (restart) or drop an unused slot"
    )
    assert check_line(out, "max_wal_senders") == (
        "FAIL max_wal_senders: 0 free of 0; raise max_wal_senders (restart)"
    )
    assert check_line(out, "max_slot_wal_keep_size") == "ok   max_slot_wal_keep_size = 1GB"


@integration
def test_an_invalidated_slot_fails_check_and_teardown_then_setup_recovers(tmp_path: Path) -> None:
    small = {"max_slot_wal_keep_size": "1MB", "max_wal_size": "32MB", "min_wal_size": "32MB"}
    with EmbeddedPostgres(settings=small) as server:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        config = write_config(tmp_path / "cdc.toml", dsn=server.dsn)
        assert cdc(config, "setup")[0] == 0
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO t VALUES (1)")
            assert cdc(config, "run", "--drain")[0] == 0
            for n in range(2, 6):  # WAL segments past max_slot_wal_keep_size
                conn.execute("INSERT INTO t VALUES (%s)", (n,))
                conn.execute("SELECT pg_switch_wal()")
            conn.execute("CHECKPOINT")
        code, out = cdc(config, "check")
        assert code == 6, out
        assert check_line(out, "slot").startswith(
            "FAIL slot: activity_cdc is invalidated (wal_status lost): the server removed WAL it "
            "needed, so changes after "
        )
        assert 'see docs/operations.md "An invalidated slot"' in out
        assert "re-baseline each table with cdc backfill --table TABLE" in out

        code, out = cdc(config, "teardown", "--yes")
        assert code == 0, out
        assert "done: dropped replication slot activity_cdc" in out
        assert "the records end at source commit " in out  # where the gap starts
        assert cdc(config, "setup")[0] == 0
        code, out = cdc(config, "check")
        assert code == 0, out
        assert check_line(out, "max_slot_wal_keep_size") == "ok   max_slot_wal_keep_size = 1MB"
        with psycopg.connect(server.dsn) as conn:
            assert conn.execute("SELECT count(*) FROM activity.records").fetchone() == (1,)
        code, out = cdc(config, "backfill", "--table", "public.t")  # the documented re-baseline
        assert code == 0, out
        assert out.splitlines()[-1].startswith("public.t: 5 baseline records at ")
        with psycopg.connect(server.dsn) as conn:
            assert conn.execute(
                "SELECT count(*) FROM activity.records WHERE operation = 'snapshot'"
            ).fetchone() == (5,)


# -- lag --watch -------------------------------------------------------------------------------


@integration
def test_lag_watch_prints_a_line_per_sample_and_exits_3_when_a_sample_was_over(
    pg: PgDatabase, config: Path
) -> None:
    assert cdc(config, "setup")[0] == 0
    pg.execute("INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 500) g")
    code, out = cdc(config, "lag", "--watch", "0.01", "--count", "3", "--max-bytes", "1000")
    assert code == 3
    samples = [line for line in out.splitlines() if f" slot {pg.slot} inactive " in line]
    assert len(samples) == 3
    assert len(lines_of(out, "over threshold: unconfirmed ")) == 3
    assert "lag over threshold in 3 of 3 sample(s), last: unconfirmed" in out

    code, out = cdc(config, "lag", "--watch", "0.01", "--count", "2", "--json")
    assert code == 0
    assert [json.loads(line)["slot"] for line in out.splitlines()] == [pg.slot, pg.slot]


@integration
def test_lag_count_without_watch_is_a_usage_error(config: Path) -> None:
    code, out = cdc(config, "lag", "--count", "2")
    assert code == 2 and "--count goes with --watch" in out


# -- teardown ----------------------------------------------------------------------------------


@integration
def test_teardown_asks_first_and_drops_nothing_when_not_confirmed(
    pg: PgDatabase, config: Path
) -> None:
    assert cdc(config, "setup")[0] == 0
    code, out = cdc(config, "teardown", input="n\n")
    assert code == 2
    assert f"will drop replication slot {pg.slot}" in out and "Drop them? [y/N]" in out
    assert "nothing was dropped" in out
    code, out = cdc(config, "teardown", input="")  # no answer at all
    assert code == 2
    assert slot_exists(pg) and published(pg) == {"public.t"}


@integration
def test_teardown_drops_the_slot_and_publication_and_keeps_the_records(
    pg: PgDatabase, config: Path
) -> None:
    assert cdc(config, "setup")[0] == 0
    pg.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    assert cdc(config, "run", "--drain")[0] == 0
    ((commit_lsn,),) = pg.execute("SELECT commit_lsn::text FROM activity.checkpoints")
    code, out = cdc(config, "teardown", input="y\n")
    assert code == 0, out
    assert "will keep the activity store (activity.records and its checkpoints)" in out
    assert f"done: dropped replication slot {pg.slot}" in out
    assert f"done: dropped publication {pg.publication}" in out
    assert f"the records end at source commit {commit_lsn} (" in out
    assert not slot_exists(pg)
    assert pg.execute("SELECT count(*) FROM pg_publication") == [(0,)]
    assert pg.execute("SELECT count(*) FROM activity.records") == [(2,)]
    assert pg.execute("SELECT count(*) FROM activity.checkpoints") == [(1,)]
    code, out = cdc(config, "teardown", "--yes")
    assert code == 0 and out.startswith("nothing to drop:")


@integration
def test_a_slot_of_another_database_fails_check_and_is_not_torn_down(
    pg: PgDatabase, config: Path
) -> None:
    assert cdc(config, "setup")[0] == 0
    pg.execute(f"SELECT pg_drop_replication_slot('{pg.slot}')")
    with psycopg.connect(pg.server.dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (pg.slot,))
        try:
            code, out = cdc(config, "check")
            assert code == 6
            assert check_line(out, "slot") == (
                f"FAIL slot: {pg.slot} belongs to database {admin.info.dbname}, not {pg.name}; "
                "choose another [source] slot name"
            )
            code, out = cdc(config, "teardown", "--yes")
            assert code == 6
            assert "not activity-cdc's slot" in out and "not dropping it" in out
        finally:
            admin.execute("SELECT pg_drop_replication_slot(%s)", (pg.slot,))


# -- shell completion --------------------------------------------------------------------------


def test_bash_completion_script_is_generated() -> None:
    result = CliRunner().invoke(main, [], env={"_CDC_COMPLETE": "bash_source"}, prog_name="cdc")
    assert result.exit_code == 0
    assert "_cdc_completion()" in result.output
    assert "complete -o nosort -F _cdc_completion cdc" in result.output

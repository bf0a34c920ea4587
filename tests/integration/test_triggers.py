"""The audit triggers on a real PostgreSQL: listing them, backing them up and restoring them
exactly, the preconditions and locking of a cutover, rollback, drop after the soak, and the
status of each table."""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from psycopg import sql

from cdc.cli.main import main
from cdc.config import Settings
from cdc.connect import connect
from cdc.control.setup import setup
from cdc.cutover.migration.backup import take_backup
from cdc.cutover.migration.drop import drop_triggers
from cdc.cutover.migration.status import migration_status
from cdc.cutover.migration.switch import cutover, plan_cutover, rollback
from cdc.cutover.triggers import audited_tables, is_audit_function, list_triggers, resolve_tables
from cdc.demo.workload import PLATFORM_TABLES, load_platform_schema
from cdc.errors import ConfigError, PrerequisiteError
from cdc.logical_messages import text_signature
from cdc.pipeline.pgoutput import Commit, Decoder, Message
from tests.fix_pg import PgDatabase
from tests.integration.helpers import drain, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.every_server]

# A small audited schema: two tables, four audit triggers over two audit functions, and an
# updated_at trigger that is application behaviour (never touched).
SHOP = """
CREATE TABLE public.audit_log (
    id bigserial PRIMARY KEY, table_name text, operation text,
    txid bigint DEFAULT txid_current(), old_data jsonb, new_data jsonb,
    changed_by bigint, changed_at timestamptz DEFAULT now()
);
CREATE TABLE public.orders (
    id int PRIMARY KEY, status text NOT NULL DEFAULT 'new', amount numeric(12, 2),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE public.customers (id int PRIMARY KEY, name text);
CREATE TABLE public.scratch (id serial PRIMARY KEY, filler text);

CREATE FUNCTION public.audit_row_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.audit_log (table_name, operation, old_data, new_data)
    VALUES (TG_TABLE_NAME, TG_OP,
            CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
            CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END);
    RETURN NULL;
END $$;
CREATE FUNCTION public.audit_status_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.audit_log (table_name, operation, old_data, new_data)
    VALUES (TG_TABLE_NAME, 'STATUS_CHANGE', jsonb_build_object('status', OLD.status),
            jsonb_build_object('status', NEW.status));
    RETURN NULL;
END $$;
CREATE FUNCTION public.touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.updated_at := now(); RETURN NEW; END $$;

CREATE TRIGGER orders_set_updated_at BEFORE UPDATE ON public.orders
    FOR EACH ROW EXECUTE FUNCTION public.touch_updated_at();
CREATE TRIGGER audit_orders_insert AFTER INSERT ON public.orders
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
CREATE TRIGGER audit_orders_update AFTER UPDATE ON public.orders
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
CREATE TRIGGER audit_orders_status AFTER UPDATE OF status ON public.orders
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION public.audit_status_change();
CREATE TRIGGER audit_customers AFTER INSERT OR UPDATE OR DELETE ON public.customers
    FOR EACH ROW EXECUTE FUNCTION public.audit_row_change();
"""
SHOP_TABLES = [{"name": "public.orders"}, {"name": "public.customers"}]
ORDERS = ("public", "orders")
CUSTOMERS = ("public", "customers")


def shop(pg: PgDatabase, **migration: Any) -> Settings:
    pg.execute(SHOP)
    settings = make_settings(pg, SHOP_TABLES, migration=migration)
    setup(settings)
    return settings


def healthy(pg: PgDatabase, settings: Settings) -> None:
    """Everything a cutover needs: a backup, and a daemon that wrote a checkpoint just now."""
    take_backup(settings)
    pg.execute("INSERT INTO public.customers VALUES (1, 'Ada')")
    drain(settings)


def trigger_states(pg: PgDatabase) -> dict[str, str]:
    rows = pg.execute(
        "SELECT tgname, tgenabled::text FROM pg_trigger WHERE NOT tgisinternal"
        " AND tgrelid IN ('public.orders'::regclass, 'public.customers'::regclass)"
    )
    return dict(rows)


def switches(pg: PgDatabase) -> list[tuple[Any, ...]]:
    return pg.execute(
        "SELECT schema_name, table_name, mode, triggers, marker FROM activity.trigger_switches"
        " ORDER BY id"
    )


def cdc(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config), "--log-level", "warning", *args])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def write_config(path: Path, pg: PgDatabase, tables: list[str], extra: str = "") -> Path:
    text = (
        f"[source]\ndsn = '{pg.dsn}'\nslot = '{pg.slot}'\npublication = '{pg.publication}'\n"
        "[batch]\nmax_rows = 100\nmax_delay_ms = 20\n" + extra
    )
    for name in tables:
        text += f"[[tables]]\nname = '{name}'\n"
    path.write_text(text)
    return path


def peek_stream(pg: PgDatabase) -> list[Any]:
    """Every pgoutput message the slot holds (not consumed), decoded."""
    with pg.connect() as conn, conn.transaction():  # a synchronous commit flushes the WAL
        conn.execute("SET LOCAL synchronous_commit = on")  # (decoding stops where it is flushed)
        conn.execute("CREATE TEMP TABLE flush_wal ()")
    rows = pg.execute(
        "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, NULL, 'proto_version',"
        " '1', 'publication_names', %s, 'messages', 'true')",
        (pg.slot, pg.publication),
    )
    decoder = Decoder()
    return [decoder.decode(bytes(row[0])) for row in rows]


# -------------------------------------------------------------------------------------------------
# Knowing the triggers
# -------------------------------------------------------------------------------------------------


def test_audit_functions_match_by_glob_on_the_name_or_the_qualified_name() -> None:
    assert is_audit_function("public", "audit_row_change", ["audit_*"])
    assert not is_audit_function("public", "touch_updated_at", ["audit_*"])
    assert not is_audit_function("public", "xaudit_row", ["audit_*"])
    assert is_audit_function("legacy", "log_change", ["legacy.*"])
    assert not is_audit_function("public", "log_change", ["legacy.*"])
    assert not is_audit_function("public", "Audit_x", ["audit_*"])  # case-sensitive


def test_list_marks_the_64_demo_audit_triggers_and_not_the_updated_at_triggers(
    pg: PgDatabase, tmp_path: Path
) -> None:
    with pg.connect() as conn:
        load_platform_schema(conn, legacy_triggers=True)
    config = write_config(tmp_path / "cdc.toml", pg, [f"public.{t}" for t in PLATFORM_TABLES])

    code, out = cdc(config, "triggers", "list", "--json")

    assert code == 0, out
    listed = json.loads(out)
    audit = [t for t in listed if t["audit"]]
    others = [t for t in listed if not t["audit"]]
    assert len(audit) == 64
    assert others and all(t["name"].endswith("_set_updated_at") for t in others)
    assert {t["function"]["signature"] for t in others} == {"public.set_updated_at()"}
    status = next(t for t in listed if t["name"] == "audit_subscriptions_status")
    assert (status["timing"], status["events"], status["level"], status["enabled_state"]) == (
        "AFTER",
        ["UPDATE OF status"],
        "ROW",
        "enabled",
    )
    assert status["function"]["signature"] == "public.audit_status_change()"
    code, text = cdc(config, "triggers", "list")
    assert code == 0
    assert "64 audit trigger(s) on 18 table(s), 64 of them enabled" in text
    assert any(
        line.split()[:2] == ["public.tokens", "audit_tokens_total_supply"]
        and "UPDATE OF total_supply" in line
        for line in text.splitlines()
    )


def test_audited_tables_are_those_with_at_least_one_enabled_audit_trigger(pg: PgDatabase) -> None:
    settings = shop(pg)
    pg.execute("ALTER TABLE public.customers DISABLE TRIGGER audit_customers")
    pg.execute("ALTER TABLE public.orders DISABLE TRIGGER audit_orders_insert")

    with connect(settings.source.dsn) as conn:
        assert audited_tables(conn, settings) == {ORDERS}
        pg.execute("ALTER TABLE public.orders DISABLE TRIGGER USER")
        assert audited_tables(conn, settings) == set()
        pg.execute("ALTER TABLE public.orders ENABLE REPLICA TRIGGER audit_orders_update")
        assert audited_tables(conn, settings) == {ORDERS}
    with pg.connect(autocommit=False) as conn:  # inside the caller's transaction ...
        conn.execute("SET LOCAL search_path = public, pg_temp")
        audited_tables(conn, settings)
        # ... it leaves the caller's settings alone
        assert conn.execute("SHOW search_path").fetchone() == ("public, pg_temp",)


def test_tables_are_named_qualified_bare_or_by_phase_and_must_be_configured(
    pg: PgDatabase,
) -> None:
    settings = shop(pg, phases={"1": ["public.customers"], "2": ["public.orders"]})

    assert resolve_tables(settings, ["orders"]) == [ORDERS]
    assert resolve_tables(settings, ["public.orders"], phase=1) == [ORDERS, CUSTOMERS]
    with pytest.raises(ConfigError, match="not in \\[\\[tables\\]\\]"):
        resolve_tables(settings, ["public.scratch"])
    with pytest.raises(ConfigError, match="phase 3 is not in"):
        resolve_tables(settings, [], phase=3)


# -------------------------------------------------------------------------------------------------
# Backup and restore
# -------------------------------------------------------------------------------------------------

SNAPSHOT = """
SELECT c.relname, t.tgname, t.tgenabled::text, pg_get_triggerdef(t.oid),
       obj_description(t.oid, 'pg_trigger'),
       p.oid::regprocedure::text, pg_get_functiondef(p.oid), pg_get_userbyid(p.proowner),
       p.prosecdef, p.proconfig, obj_description(p.oid, 'pg_proc')
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_proc p ON p.oid = t.tgfoid
 WHERE NOT t.tgisinternal AND p.proname LIKE 'audit\\_%'
 ORDER BY 1, 2
"""


def snapshot(pg: PgDatabase) -> list[tuple[Any, ...]]:
    with pg.connect() as conn:
        conn.execute("SET search_path = pg_catalog")
        return conn.execute(SNAPSHOT).fetchall()


@pytest.fixture
def other_role(pg: PgDatabase) -> Iterator[str]:
    name = f"cdc_owner_{uuid.uuid4().hex[:8]}"
    pg.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        pg.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(sql.Identifier(name)))
        pg.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        pg.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_backup_drop_restore_recreates_every_audit_trigger_and_function_exactly(
    pg: PgDatabase, tmp_path: Path, other_role: str
) -> None:
    with pg.connect() as conn:
        load_platform_schema(conn, legacy_triggers=True)
    owner = sql.Identifier(other_role)
    pg.execute(
        sql.SQL(
            """
            COMMENT ON TRIGGER audit_users_insert ON public.users IS 'who joined';
            COMMENT ON FUNCTION public.audit_status_change() IS 'workflow transitions, it''s';
            ALTER FUNCTION public.audit_status_change() SECURITY DEFINER;
            ALTER FUNCTION public.audit_status_change() SET search_path = public, pg_temp;
            ALTER FUNCTION public.audit_status_change() SET work_mem = '8MB';
            ALTER FUNCTION public.audit_amount_change() OWNER TO {};
            ALTER TABLE public.users DISABLE TRIGGER audit_users_delete;
            ALTER TABLE public.wallets ENABLE REPLICA TRIGGER audit_wallets_update;
            ALTER TABLE public.tokens ENABLE ALWAYS TRIGGER audit_tokens_total_supply;
            """
        ).format(owner)
    )
    before = snapshot(pg)
    config = write_config(tmp_path / "cdc.toml", pg, [f"public.{t}" for t in PLATFORM_TABLES])
    code, out = cdc(config, "triggers", "backup", "--out", str(tmp_path / "backup.sql"))
    assert code == 0, out
    assert "64 audit trigger(s) on 18 table(s), 3 function(s)" in out

    pg.execute(
        "DROP FUNCTION public.audit_row_change(), public.audit_status_change(),"
        " public.audit_amount_change() CASCADE"
    )
    assert snapshot(pg) == []
    with pg.connect() as conn:
        conn.execute((tmp_path / "backup.sql").read_text())

    after = snapshot(pg)
    assert len(after) == 64
    assert after == before
    states = {row[1]: row[2] for row in after}
    assert (states["audit_users_delete"], states["audit_wallets_update"]) == ("D", "R")
    assert states["audit_tokens_total_supply"] == "A"


def test_backup_is_stored_with_the_checksum_of_its_sql_and_marked_verified(
    pg: PgDatabase, tmp_path: Path
) -> None:
    settings = shop(pg)

    backup = take_backup(settings)

    ((digest, text, triggers, verified_at),) = pg.execute(
        "SELECT checksum, sql, triggers, verified_at FROM activity.trigger_backups WHERE id = %s",
        (backup.id,),
    )
    assert digest == hashlib.sha256(text.encode()).hexdigest() == backup.checksum
    assert verified_at is not None
    assert sorted(t["name"] for t in triggers) == [
        "audit_customers",
        "audit_orders_insert",
        "audit_orders_status",
        "audit_orders_update",
    ]
    script = backup.script("shop")
    assert script.endswith(text) and f"sha256 of everything after this header: {digest}" in script
    assert "orders_set_updated_at" not in text  # not an audit trigger: not backed up, not touched


def test_restoring_a_backup_twice_is_harmless(pg: PgDatabase) -> None:
    settings = shop(pg)
    backup = take_backup(settings)
    before = snapshot(pg)

    with pg.connect() as conn:
        conn.execute(backup.sql)
        conn.execute(backup.sql)

    assert snapshot(pg) == before


# -------------------------------------------------------------------------------------------------
# Cutover: preconditions
# -------------------------------------------------------------------------------------------------


def _break_publication(pg: PgDatabase, settings: Settings) -> None:
    pg.execute(f'ALTER PUBLICATION "{pg.publication}" DROP TABLE public.orders')


def _break_replica_identity(pg: PgDatabase, settings: Settings) -> None:
    pg.execute("ALTER TABLE public.orders REPLICA IDENTITY DEFAULT")


def _break_slot(pg: PgDatabase, settings: Settings) -> None:
    pg.execute("SELECT pg_drop_replication_slot(%s)", (pg.slot,))


def _break_acknowledgement(pg: PgDatabase, settings: Settings) -> None:
    pg.execute("UPDATE activity.checkpoints SET updated_at = now() - interval '1 hour'")


def _break_lag(pg: PgDatabase, settings: Settings) -> None:
    pg.execute(
        "INSERT INTO public.scratch (filler) SELECT repeat('x', 400) FROM generate_series(1, 6000)"
    )


def _break_backup_missing(pg: PgDatabase, settings: Settings) -> None:
    pg.execute("DELETE FROM activity.trigger_backups")


def _break_backup_stale(pg: PgDatabase, settings: Settings) -> None:
    pg.execute("COMMENT ON TRIGGER audit_orders_update ON public.orders IS 'changed after'")


def _break_backup_tampered(pg: PgDatabase, settings: Settings) -> None:
    pg.execute("UPDATE activity.trigger_backups SET sql = sql || '-- edited'")


@pytest.mark.parametrize(
    ("break_it", "check", "reason"),
    [
        (_break_publication, "publication", "is not in publication"),
        (_break_replica_identity, "replica_identity", "does not have REPLICA IDENTITY FULL"),
        (_break_slot, "slot", "does not exist"),
        (_break_acknowledgement, "acknowledged", "has not acknowledged within 120s"),
        (_break_lag, "lag", "over [migration] max_lag_bytes = 1000000"),
        (_break_backup_missing, "backup", "no backup of the audit triggers"),
        (_break_backup_stale, "backup", "trigger audit_orders_update on public.orders changed"),
        (_break_backup_tampered, "backup", "does not match its checksum"),
    ],
)
def test_cutover_refuses_with_the_reason_when_a_precondition_fails_and_changes_nothing(
    pg: PgDatabase, break_it: Any, check: str, reason: str
) -> None:
    settings = shop(pg, max_lag_bytes=1_000_000)
    healthy(pg, settings)
    with connect(settings.source.dsn) as conn:
        healthy_plan = plan_cutover(conn, settings, [ORDERS])
    assert healthy_plan.ok, healthy_plan.as_json()  # the healthy state passes
    states = trigger_states(pg)

    break_it(pg, settings)

    with connect(settings.source.dsn) as conn:
        plan = plan_cutover(conn, settings, [ORDERS])
    assert [c.name for c in plan.tables[0].checks if not c.ok] == [check]
    with pytest.raises(PrerequisiteError) as refused:
        cutover(settings, [ORDERS])
    assert reason in str(refused.value)
    assert str(refused.value).startswith("cutover refused for 1 of 1 table(s): public.orders:")
    assert trigger_states(pg) == states
    assert pg.execute("SELECT count(*) FROM activity.trigger_switches") == [(0,)]


@pytest.fixture
def login_role(pg: PgDatabase) -> Iterator[str]:
    name = f"cdc_operator_{uuid.uuid4().hex[:8]}"
    pg.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'operator'").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        pg.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(sql.Identifier(name)))
        pg.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        pg.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_cutover_refuses_a_role_that_may_not_emit_the_marker_and_says_what_to_grant(
    pg: PgDatabase, login_role: str
) -> None:
    settings = shop(pg)
    healthy(pg, settings)
    role = sql.Identifier(login_role)
    pg.execute(sql.SQL("ALTER TABLE public.orders OWNER TO {}").format(role))
    pg.execute(sql.SQL("GRANT USAGE ON SCHEMA activity TO {}").format(role))
    pg.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA activity TO {}").format(role))
    with pg.connect() as conn:
        signature = text_signature(conn.info.server_version)
    pg.execute(f"REVOKE EXECUTE ON FUNCTION {signature} FROM PUBLIC")
    dsn = pg.server.dsn_for(pg.name, user=login_role, password="operator")
    as_operator = settings.model_copy(
        update={"source": settings.source.model_copy(update={"dsn": dsn})}
    )

    with connect(as_operator.source.dsn) as conn:
        plan = plan_cutover(conn, as_operator, [ORDERS, CUSTOMERS])
    failing = {t.name: [c.name for c in t.checks if not c.ok] for t in plan.tables}
    assert failing == {"public.orders": ["privileges"], "public.customers": ["privileges"]}
    with pytest.raises(PrerequisiteError) as refused:
        cutover(as_operator, [ORDERS])
    message = str(refused.value)
    assert f"role {login_role} cannot EXECUTE pg_logical_emit_message" in message
    assert f"GRANT EXECUTE ON FUNCTION {signature} TO {role.as_string()}" in message
    assert "does not own" not in message  # it owns orders
    assert "does not own public.customers" in next(
        c.detail for c in plan.tables[1].checks if c.name == "privileges"
    )
    assert trigger_states(pg)["audit_orders_insert"] == "O"


def test_cutover_without_a_running_daemon_or_checkpoint_says_nobody_acknowledges(
    pg: PgDatabase, tmp_path: Path
) -> None:
    settings = shop(pg)
    take_backup(settings)
    config = write_config(tmp_path / "cdc.toml", pg, ["public.orders", "public.customers"])

    code, out = cdc(config, "triggers", "cutover", "--table", "orders", "--dry-run")

    assert code == 5
    assert "FAIL acknowledged: the daemon has not acknowledged within 120s" in out
    assert "nobody streams from the slot, no checkpoint" in out
    assert "ok   publication:" in out and "ok   backup: backup 1 (verified)" in out
    assert "-- dry run: nothing was changed" in out
    assert trigger_states(pg)["audit_orders_insert"] == "O"


def test_cutover_accepts_a_daemon_that_is_streaming_and_acknowledging(pg: PgDatabase) -> None:
    from cdc.service.daemon import Daemon

    settings = shop(pg)
    take_backup(settings)
    daemon = Daemon(settings)
    thread = threading.Thread(target=daemon.run)
    thread.start()
    try:
        pg.execute("INSERT INTO public.customers VALUES (7, 'Grace')")  # something to confirm
        for _ in range(400):
            with connect(settings.source.dsn) as conn:
                plan = plan_cutover(conn, settings, [CUSTOMERS])
            acknowledged = next(c for c in plan.tables[0].checks if c.name == "acknowledged")
            if plan.ok and "pid" in acknowledged.detail:
                break
            threading.Event().wait(0.05)
    finally:
        daemon.request_stop()
        thread.join(timeout=30)
        daemon.close()
    assert plan.ok, plan.as_json()
    assert acknowledged.detail.startswith("the daemon (pid "), acknowledged.detail


# -------------------------------------------------------------------------------------------------
# Cutover and rollback
# -------------------------------------------------------------------------------------------------


def test_cutover_disables_only_audit_triggers_and_marks_the_switch_in_the_stream(
    pg: PgDatabase, tmp_path: Path
) -> None:
    settings = shop(pg)
    healthy(pg, settings)
    config = write_config(tmp_path / "cdc.toml", pg, ["public.orders", "public.customers"])

    code, out = cdc(config, "triggers", "cutover", "--table", "public.orders", "--json")

    assert code == 0, out
    (result,) = json.loads(out)
    expected_marker = {
        "table": "public.orders",
        "to": "cdc",
        "phase": None,
        "triggers": ["audit_orders_insert", "audit_orders_status", "audit_orders_update"],
        "backup_id": 1,
        "by": pg.execute("SELECT session_user::text")[0][0],  # who switched it
    }
    assert result["marker"] == expected_marker and result["attempts"] == 1
    assert trigger_states(pg) == {
        "orders_set_updated_at": "O",
        "audit_orders_insert": "D",
        "audit_orders_update": "D",
        "audit_orders_status": "D",
        "audit_customers": "O",
    }
    assert switches(pg) == [
        ("public", "orders", "cdc", expected_marker["triggers"], expected_marker)
    ]
    messages = peek_stream(pg)
    (marker,) = [m for m in messages if isinstance(m, Message)]
    assert (marker.prefix, marker.transactional) == ("cdc.cutover", True)
    assert json.loads(marker.content) == expected_marker
    assert f"{marker.lsn >> 32:X}/{marker.lsn & 0xFFFFFFFF:X}" == result["marker_lsn"]
    assert marker.xid is None or marker.xid == result["xid"] & 0xFFFFFFFF
    # the marker commits in its own transaction, which is in the stream
    commits = [m for m in messages if isinstance(m, Commit)]
    assert any(c.commit_lsn > marker.lsn for c in commits)

    code, out = cdc(config, "triggers", "cutover", "--table", "public.orders")
    assert code == 0 and "public.orders: unchanged (already on CDC)" in out


def test_changes_after_a_cutover_write_no_audit_rows_and_after_a_rollback_they_do_again(
    pg: PgDatabase,
) -> None:
    settings = shop(pg)
    healthy(pg, settings)
    pg.execute("INSERT INTO public.orders VALUES (1)")

    cutover(settings, [ORDERS])
    pg.execute("UPDATE public.orders SET status = 'paid' WHERE id = 1")
    pg.execute("INSERT INTO public.orders VALUES (2)")
    on_cdc = pg.execute("SELECT count(*) FROM public.audit_log WHERE table_name = 'orders'")
    (result,) = rollback(settings, [ORDERS])
    pg.execute("UPDATE public.orders SET status = 'shipped' WHERE id = 1")

    assert on_cdc == [(1,)]  # only the insert before the cutover
    assert result.triggers == ("audit_orders_insert", "audit_orders_status", "audit_orders_update")
    assert result.marker is not None and result.marker["to"] == "triggers"
    assert trigger_states(pg)["audit_orders_status"] == "O"
    rows = pg.execute(
        "SELECT operation FROM public.audit_log WHERE table_name = 'orders' ORDER BY id"
    )
    assert sorted(rows) == [("INSERT",), ("STATUS_CHANGE",), ("UPDATE",)]
    assert [row[2] for row in switches(pg)] == ["cdc", "triggers"]
    (again,) = rollback(settings, [ORDERS])
    assert again.skipped == "already on triggers"


def test_rollback_restores_each_trigger_to_its_backed_up_state_not_simply_enabled(
    pg: PgDatabase,
) -> None:
    pg.execute(SHOP)
    pg.execute("ALTER TABLE public.orders ENABLE ALWAYS TRIGGER audit_orders_update")
    pg.execute("ALTER TABLE public.orders DISABLE TRIGGER audit_orders_status")
    settings = make_settings(pg, SHOP_TABLES)
    setup(settings)
    healthy(pg, settings)

    (cut,) = cutover(settings, [ORDERS])[1]
    assert cut.triggers == ("audit_orders_insert", "audit_orders_update")
    rollback(settings, [ORDERS])

    states = trigger_states(pg)
    assert (states["audit_orders_insert"], states["audit_orders_update"]) == ("O", "A")
    assert states["audit_orders_status"] == "D"


def test_cutover_waits_for_a_held_lock_retries_and_switches_once_it_is_released(
    pg: PgDatabase,
) -> None:
    settings = shop(pg, lock_timeout_ms=50, lock_attempts=5)
    healthy(pg, settings)
    pg.execute("INSERT INTO public.orders VALUES (1)")
    holder = pg.connect(autocommit=False)
    holder.execute("UPDATE public.orders SET amount = 10 WHERE id = 1")  # holds ROW EXCLUSIVE
    waits: list[tuple[Any, int]] = []

    def on_lock_wait(table: Any, attempt: int, _delay: float) -> None:
        waits.append((table, attempt))
        holder.commit()  # the writer finishes: the next attempt gets the lock

    try:
        (result,) = cutover(settings, [ORDERS], on_lock_wait=on_lock_wait)[1]
    finally:
        holder.close()

    assert waits == [(ORDERS, 1)]
    assert result.attempts == 2
    # the writer committed before the switch, with the triggers on: it is in the audit log
    assert pg.execute(
        "SELECT count(*) FROM public.audit_log WHERE table_name = 'orders' AND operation = 'UPDATE'"
    ) == [(1,)]
    assert trigger_states(pg)["audit_orders_update"] == "D"


def test_cutover_gives_up_after_its_lock_attempts_and_leaves_the_table_as_it_was(
    pg: PgDatabase,
) -> None:
    settings = shop(pg, lock_timeout_ms=20, lock_attempts=3, lock_backoff_max_ms=0)
    healthy(pg, settings)
    holder = pg.connect(autocommit=False)
    holder.execute("LOCK TABLE public.orders IN ROW EXCLUSIVE MODE")
    attempts: list[int] = []
    try:
        with pytest.raises(PrerequisiteError, match=r"public\.orders is busy: its lock was not"):
            cutover(settings, [ORDERS], on_lock_wait=lambda _t, n, _d: attempts.append(n))
    finally:
        holder.close()

    assert attempts == [1, 2]
    assert trigger_states(pg)["audit_orders_insert"] == "O"
    assert pg.execute("SELECT count(*) FROM activity.trigger_switches") == [(0,)]


# -------------------------------------------------------------------------------------------------
# Drop
# -------------------------------------------------------------------------------------------------


def test_drop_waits_for_the_soak_period(pg: PgDatabase) -> None:
    settings = shop(pg, soak_hours=1)
    healthy(pg, settings)
    cutover(settings, [ORDERS])

    plan, _script, done = drop_triggers(settings)

    assert done == [] and plan.dropping == []
    kept = {t.name: t.kept for t in plan.tables}
    assert (
        kept["public.orders"] is not None
        and "less than [migration] soak_hours = 1" in kept["public.orders"]
    )
    assert (
        kept["public.customers"] is not None and "still on its triggers" in kept["public.customers"]
    )
    with pytest.raises(PrerequisiteError, match=r"drop refused: public\.orders: on CDC for"):
        drop_triggers(settings, [ORDERS])
    assert trigger_states(pg)["audit_orders_insert"] == "D"


def test_drop_dry_run_prints_the_sql_and_drops_nothing(pg: PgDatabase, tmp_path: Path) -> None:
    settings = shop(pg, soak_hours=0)
    healthy(pg, settings)
    cutover(settings, [ORDERS])
    config = write_config(
        tmp_path / "cdc.toml",
        pg,
        ["public.orders", "public.customers"],
        "[migration]\nsoak_hours = 0\n",
    )

    code, out = cdc(config, "triggers", "drop", "--dry-run")

    assert code == 0, out
    assert 'DROP TRIGGER "audit_orders_insert" ON "public"."orders";' in out
    assert "DROP FUNCTION public.audit_status_change();" in out
    assert "DROP FUNCTION public.audit_row_change()" not in out  # customers still use it
    assert "-- kept: public.customers: still on its triggers" in out
    assert "-- dry run: nothing was changed" in out
    assert len(trigger_states(pg)) == 5


def test_drop_removes_disabled_audit_triggers_and_only_functions_nobody_uses(
    pg: PgDatabase,
) -> None:
    settings = shop(pg, soak_hours=0)
    healthy(pg, settings)
    cutover(settings, [ORDERS])

    _plan, _script, done = drop_triggers(settings)

    assert trigger_states(pg) == {"orders_set_updated_at": "O", "audit_customers": "O"}
    functions = {
        r[0] for r in pg.execute("SELECT proname FROM pg_proc WHERE proname LIKE 'audit%'")
    }
    assert functions == {"audit_row_change"}  # audit_customers still uses it
    assert done == [
        "dropped 3 audit trigger(s) of public.orders",
        "dropped function public.audit_status_change()",
    ]
    assert switches(pg)[-1][:3] == ("public", "orders", "dropped")


def test_drop_refuses_when_the_backup_no_longer_matches_the_triggers(pg: PgDatabase) -> None:
    settings = shop(pg, soak_hours=0)
    healthy(pg, settings)
    cutover(settings, [ORDERS])
    pg.execute(
        "CREATE OR REPLACE FUNCTION public.audit_status_change() RETURNS trigger"
        " LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$"
    )

    with pytest.raises(PrerequisiteError, match=r"function public\.audit_status_change\(\) of"):
        drop_triggers(settings, [ORDERS])
    assert "audit_orders_status" in trigger_states(pg)


def test_rollback_after_drop_recreates_triggers_and_functions_from_the_backup(
    pg: PgDatabase,
) -> None:
    settings = shop(pg, soak_hours=0)
    healthy(pg, settings)
    before = snapshot(pg)
    cutover(settings, [ORDERS])
    drop_triggers(settings, [ORDERS])

    (result,) = rollback(settings, [ORDERS])

    assert result.recreated == ("audit_orders_insert", "audit_orders_status", "audit_orders_update")
    assert result.triggers == result.recreated and result.backup_id == 1
    assert snapshot(pg) == before
    pg.execute("INSERT INTO public.orders VALUES (5)")  # the triggers write again
    assert pg.execute("SELECT operation FROM public.audit_log WHERE table_name = 'orders'") == [
        ("INSERT",)
    ]


# -------------------------------------------------------------------------------------------------
# Status
# -------------------------------------------------------------------------------------------------


CAPTURE_MODES = """
CREATE TABLE IF NOT EXISTS activity.capture_modes (
    schema_name text, table_name text, mode text NOT NULL, since_commit_lsn pg_lsn,
    changed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (schema_name, table_name)
)
"""


def test_status_shows_each_tables_mode_counts_and_the_daemons_view(
    pg: PgDatabase, tmp_path: Path
) -> None:
    settings = shop(pg)
    healthy(pg, settings)
    pg.execute("INSERT INTO public.orders VALUES (1), (2)")
    drain(settings)
    config = write_config(tmp_path / "cdc.toml", pg, ["public.orders", "public.customers"])

    code, out = cdc(config, "triggers", "status", "--json")
    assert code == 0, out
    before = {t["table"]: t for t in json.loads(out)["tables"]}
    assert before["public.orders"]["mode"] == "shadow"
    assert (before["public.orders"]["records"], before["public.orders"]["legacy_rows"]) == (2, 2)

    cutover(settings, [ORDERS], phase=1)
    pg.execute("INSERT INTO public.orders VALUES (3)")
    drain(settings)
    # a daemon that has not applied the marker yet (the table is the daemon's; made here when
    # the activity store does not have it)
    pg.execute(CAPTURE_MODES)
    pg.execute(
        "INSERT INTO activity.capture_modes (schema_name, table_name, mode, since_commit_lsn)"
        " VALUES ('public', 'orders', 'shadow', '0/1') ON CONFLICT (schema_name, table_name)"
        " DO UPDATE SET mode = 'shadow'"
    )

    code, out = cdc(config, "triggers", "status", "--json")
    assert code == 0, out
    after = {t["table"]: t for t in json.loads(out)["tables"]}
    orders = after["public.orders"]
    assert orders["mode"] == "cdc" and orders["last_switch"]["phase"] == 1
    assert (orders["records"], orders["legacy_rows"]) == (1, 0)  # since the cutover
    assert orders["daemon_mode"]["mode"] == "shadow"
    assert "has not applied the latest switch yet" in orders["note"]
    assert after["public.customers"]["mode"] == "shadow"

    code, text = cdc(config, "triggers", "status")
    assert code == 0
    (line,) = [row for row in text.splitlines() if row.startswith("public.orders")]
    assert line.split()[:3] == ["public.orders", "cdc", "shadow"]
    assert text.splitlines()[-1] == "1 cdc, 1 shadow; latest backup 1"


def test_status_without_the_daemons_capture_modes_says_no_cutover_was_recorded_yet(
    pg: PgDatabase, tmp_path: Path
) -> None:
    settings = shop(pg)
    pg.execute("DROP TABLE IF EXISTS activity.capture_modes CASCADE")
    config = write_config(tmp_path / "cdc.toml", pg, ["public.orders", "public.customers"])

    code, out = cdc(config, "triggers", "status", "--json")
    assert code == 0, out
    assert json.loads(out)["capture_modes"] is False
    assert {t["daemon_mode"] for t in json.loads(out)["tables"]} == {None}
    code, text = cdc(config, "triggers", "status")
    assert code == 0
    assert text.splitlines()[-1] == (
        "2 shadow; no backup yet; the daemon has recorded no cutover yet"
    )
    assert migration_status(settings).backup_id is None


def test_status_without_the_publication_says_triggers_and_after_drop_says_dropped(
    pg: PgDatabase,
) -> None:
    settings = shop(pg, soak_hours=0)
    healthy(pg, settings)
    cutover(settings, [ORDERS])
    drop_triggers(settings, [ORDERS])
    pg.execute(f'ALTER PUBLICATION "{pg.publication}" DROP TABLE public.customers')

    modes = {t.table: t.mode for t in migration_status(settings).tables}

    assert modes == {ORDERS: "dropped", CUSTOMERS: "triggers"}


def test_list_and_status_of_a_table_without_triggers(pg: PgDatabase) -> None:
    pg.execute(SHOP)
    settings = make_settings(pg, [{"name": "public.scratch"}])
    setup(settings)

    with connect(settings.source.dsn) as conn:
        assert list_triggers(conn, settings) == []
    (status,) = migration_status(settings).tables
    assert (status.mode, status.note) == ("cdc", "no audit triggers")
    with pytest.raises(ConfigError, match="nothing to back up"):
        take_backup(settings)

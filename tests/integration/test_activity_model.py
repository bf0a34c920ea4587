"""The activity model on a real database: transition rules, transaction context, application
events, keyed-hash redaction, who may set context, and cutover markers."""

from __future__ import annotations

import json

import psycopg
import pytest

from tests.fix_pg import PgDatabase
from tests.integration.helpers import drain, records, setup_and_settings

pytestmark = pytest.mark.integration

SCHEMA = """
CREATE TABLE approvals (id int PRIMARY KEY, status text NOT NULL, amount numeric,
                        updated_by int, api_key text, flagged boolean DEFAULT false);
CREATE ROLE {app_writer} LOGIN;
CREATE ROLE {app_other} LOGIN;
CREATE ROLE {api_user} LOGIN;
GRANT SELECT, INSERT, UPDATE, DELETE ON approvals TO {app_writer}, {app_other}, {api_user};
"""
APPROVALS = {
    "name": "public.approvals",
    "entity_type": "approval",
    "category": "approval",
    "actor_column": "updated_by",
    "rules": [
        {"column": "status", "from": "pending", "to": "approved", "action": "approval.approved",
         "severity": "notice"},
        {"column": "status", "to": "rejected", "action": "approval.rejected",
         "severity": "warning", "category": "compliance"},
        {"column": "flagged", "to": True, "action": "approval.flagged", "severity": "error"},
        {"column": "status", "to": "pending", "operations": ["insert"],
         "action": "approval.requested"},
    ],
}  # fmt: skip


ROLES = ("app_writer", "app_other", "api_user")


def role(pg: PgDatabase, name: str) -> str:
    """Roles are per cluster: one set per test database."""
    return f"{name}_{pg.slot}"


@pytest.fixture
def settings(pg: PgDatabase):  # type: ignore[no-untyped-def]
    names = {name: role(pg, name) for name in ROLES}
    try:
        yield setup_and_settings(
            pg,
            SCHEMA.format(**names),
            [APPROVALS],
            context={"allowed_roles": [names["app_writer"]], "request_roles": [names["api_user"]]},
        )
    finally:
        for name in names.values():
            pg.execute(f"DROP OWNED BY {name}")
            pg.execute(f"DROP ROLE IF EXISTS {name}")


def as_role(pg: PgDatabase, name: str) -> psycopg.Connection:  # type: ignore[type-arg]
    return psycopg.connect(pg.server.dsn_for(pg.name, user=role(pg, name)), autocommit=True)


def test_transition_rules_name_the_business_action(pg: PgDatabase, settings) -> None:  # type: ignore[no-untyped-def]
    pg.execute("INSERT INTO approvals (id, status) VALUES (1, 'pending'), (2, 'pending')")
    pg.execute("UPDATE approvals SET status = 'approved' WHERE id = 1")
    pg.execute("UPDATE approvals SET status = 'rejected' WHERE id = 2")
    pg.execute("UPDATE approvals SET amount = 5 WHERE id = 2")
    pg.execute("UPDATE approvals SET flagged = true WHERE id = 2")
    drain(settings)
    got = [(r["action"], r["severity"], r["category"]) for r in records(pg)]
    assert got == [
        ("approval.requested", "info", "approval"),
        ("approval.requested", "info", "approval"),
        ("approval.approved", "notice", "approval"),
        ("approval.rejected", "warning", "compliance"),
        ("approval.update", "info", "approval"),
        ("approval.flagged", "error", "approval"),
    ]


def test_context_applies_to_every_change_of_its_transaction_even_earlier_ones(
    pg: PgDatabase, settings
) -> None:  # type: ignore[no-untyped-def]
    with as_role(pg, "app_writer") as conn, conn.transaction():
        conn.execute("INSERT INTO approvals (id, status, updated_by) VALUES (1, 'pending', 7)")
        conn.execute(
            "SELECT activity.set_context(%s)",
            (json.dumps({"actor_id": "user-42", "request_id": "req-1"}),),
        )
        conn.execute("UPDATE approvals SET status = 'approved', updated_by = 8 WHERE id = 1")
    pg.execute("INSERT INTO approvals (id, status, updated_by) VALUES (2, 'pending', 9)")
    drain(settings)
    rows = records(pg)
    assert [r["actor_id"] for r in rows] == ["user-42", "user-42", "9"]
    assert rows[0]["context"] == {"actor_id": "user-42", "request_id": "req-1",
                                  "actor_source": "context"}  # fmt: skip
    assert rows[2]["context"] is None


def test_postgrest_pre_request_turns_jwt_claims_into_context(pg: PgDatabase, settings) -> None:  # type: ignore[no-untyped-def]
    with as_role(pg, "api_user") as conn, conn.transaction():
        conn.execute(
            "SELECT set_config('request.jwt.claims', %s, true)",
            (json.dumps({"sub": "b7a1", "role": "authenticated"}),),
        )
        conn.execute("SELECT activity.pre_request()")
        conn.execute("INSERT INTO approvals (id, status) VALUES (1, 'pending')")
    drain(settings)
    (row,) = records(pg)
    assert row["actor_id"] == "b7a1"
    assert row["context"]["role"] == "authenticated" and row["context"]["source"] == "postgrest"


def test_application_activities_are_recorded_with_their_transaction_or_at_once(
    pg: PgDatabase, settings
) -> None:  # type: ignore[no-untyped-def]
    with as_role(pg, "app_writer") as conn:
        with conn.transaction():
            conn.execute(
                "SELECT activity.log('user.login', 'user', '42', '{\"ip\": \"10.0.0.1\"}', "
                "'authentication', 'info', '42')"
            )
        with pytest.raises(psycopg.errors.DivisionByZero), conn.transaction():
            conn.execute("SELECT activity.log('export.started', 'report', '9')")  # rolled back
            conn.execute(
                "SELECT activity.log_now('approval.denied_attempt', 'approval', '1', '{}', "
                "'approval', 'warning', '42')"
            )  # kept although the transaction fails
            conn.execute("SELECT 1 / 0")
    drain(settings)
    got = [(r["action"], r["entity_id"], r["actor_id"], r["severity"]) for r in records(pg)]
    assert sorted(got) == [("approval.denied_attempt", "1", "42", "warning"),
                           ("user.login", "42", "42", "info")]  # fmt: skip
    login = next(r for r in records(pg) if r["action"] == "user.login")
    assert login["context"] == {"ip": "10.0.0.1"} and login["xid"] is not None
    assert drain(settings).records == 0  # nothing recorded twice after a restart


def test_roles_not_allowed_cannot_set_context_or_emit_messages(pg: PgDatabase, settings) -> None:  # type: ignore[no-untyped-def]
    # A request role may only derive context from its verified claims, never name an actor.
    with as_role(pg, "api_user") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute('SELECT activity.set_context(\'{"actor_id": "admin"}\')')
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT activity.log('x')")
    with as_role(pg, "app_other") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute('SELECT activity.set_context(\'{"actor_id": "admin"}\')')
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT pg_logical_emit_message(true, 'cdc.context', '{\"actor_id\": 1}')")


def test_hmac_redaction_stores_a_keyed_hash_and_never_the_secret(
    pg: PgDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDC_REDACTION_KEY", "test-key-0123456789")
    settings = setup_and_settings(
        pg,
        "CREATE TABLE keys (id int PRIMARY KEY, api_key text)",
        [{"name": "public.keys"}],
        redaction={"mode": "hmac"},
    )
    pg.execute("INSERT INTO keys VALUES (1, 'sk_live_SECRET'), (2, 'sk_live_SECRET')")
    pg.execute("UPDATE keys SET api_key = 'sk_live_OTHER' WHERE id = 2")
    drain(settings)
    dump = pg.execute("SELECT string_agg(r::text, ' ') FROM activity.records r")[0][0]
    assert "sk_live" not in dump
    first, second, update = records(pg)
    assert first["new"]["api_key"] == second["new"]["api_key"]  # equal secrets stay comparable
    assert first["new"]["api_key"].startswith("hmac-sha256:")
    assert update["changes"]["api_key"]["old"] != update["changes"]["api_key"]["new"]


def test_cutover_marker_switches_a_table_from_shadow_to_live_at_its_commit(pg: PgDatabase) -> None:
    settings = setup_and_settings(
        pg,
        "CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE audit_log (x jsonb); "
        "CREATE FUNCTION audit_row() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN INSERT INTO audit_log VALUES (to_jsonb(NEW)); RETURN NULL; END $$; "
        "CREATE TRIGGER audit_t AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION audit_row();",
        [{"name": "public.t"}],
        migration={"audit_functions": ["audit_*"]},
    )
    pg.execute("INSERT INTO t VALUES (1)")  # the trigger records it: CDC keeps a shadow copy
    with pg.connect() as conn, conn.transaction():
        conn.execute("ALTER TABLE t DISABLE TRIGGER audit_t")
        conn.execute(
            "SELECT pg_logical_emit_message(true, 'cdc.cutover', %s)",
            (json.dumps({"table": "public.t", "to": "cdc", "phase": 1}),),
        )
    pg.execute("INSERT INTO t VALUES (2)")  # CDC only
    drain(settings)
    got = [(r["source"], r["action"], r["entity_id"]) for r in records_with_source(pg)]
    assert got == [("shadow", "t.insert", "1"), ("migration", "migration.cutover", None),
                   ("database", "t.insert", "2")]  # fmt: skip
    assert pg.execute("SELECT mode FROM activity.capture_modes")[0][0] == "cdc"
    pg.execute("INSERT INTO t VALUES (3)")
    drain(settings)  # a restart keeps the mode the marker set
    assert records_with_source(pg)[-1]["source"] == "database"


def records_with_source(pg: PgDatabase) -> list[dict[str, object]]:
    rows = pg.execute(
        "SELECT source, action, entity_id FROM activity.records ORDER BY commit_lsn, seq"
    )
    return [{"source": s, "action": a, "entity_id": e} for s, a, e in rows]


def test_the_python_helpers_set_context_and_log_activities(pg: PgDatabase, settings) -> None:  # type: ignore[no-untyped-def]
    from cdc.app import log_activity, set_context

    with as_role(pg, "app_writer") as conn:
        with conn.transaction():
            conn.execute("INSERT INTO approvals (id, status) VALUES (5, 'pending')")
            set_context(conn, actor_id="u-9", request_id="r-1")
            log_activity(conn, "report.exported", entity_type="report", entity_id=77,
                         details={"rows": 120}, category="reporting")  # fmt: skip
        with pytest.raises(psycopg.errors.DivisionByZero), conn.transaction():
            log_activity(conn, "approval.denied_attempt", entity_type="approval", entity_id=5,
                         severity="warning", actor_id="u-9", transactional=False)  # fmt: skip
            conn.execute("SELECT 1 / 0")
        with pytest.raises(ValueError, match="severity"):
            log_activity(conn, "x", severity="loud")
    drain(settings)
    got = {r["action"]: r for r in records(pg)}
    assert got["approval.requested"]["actor_id"] == "u-9"
    assert got["report.exported"]["context"] == {
        "actor_id": "u-9",
        "request_id": "r-1",
        "rows": 120,
    }
    assert (
        got["report.exported"]["entity_id"] == "77" and got["report.exported"]["actor_id"] == "u-9"
    )
    assert got["approval.denied_attempt"]["severity"] == "warning"

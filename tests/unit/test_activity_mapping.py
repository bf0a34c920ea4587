"""Activity mapping (cdc.pipeline.activity): a committed change becomes one ActivityRecord.

Each test builds Settings from a config mapping (as a TOML file would give it), a relation
with the columns it needs, and RowChange/TableTruncate values, then reads the record's JSON
columns back with json.loads.
"""

from __future__ import annotations

import json
import string
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cdc.config import Settings, SeverityByOperation, settings_from_mapping
from cdc.pipeline.activity import ActivityMapper, ActivityRecord
from cdc.pipeline.changes import (
    RelationInfo,
    RowChange,
    TableTruncate,
    TransactionEnd,
    TransactionInfo,
    TransactionMessage,
    relation_info,
)
from cdc.pipeline.pgoutput import ColumnValue, TupleData
from tests.unit.messages import INT4, T0, TIMESTAMPTZ, relation

BOOL, JSONB, NUMERIC, TEXT_ARRAY, INT4_ARRAY = 16, 3802, 1700, 1009, 1007

USER_COLUMNS: list[str | tuple[str, int]] = [
    ("id", INT4),
    "email",
    "name",
    ("updated_at", TIMESTAMPTZ),
    "updated_by",
    "created_by",
    "password_hash",
    "api_key",
    "client_secret",
    "ssn",
    ("profile", JSONB),
    ("tags", TEXT_ARRAY),
    ("score", NUMERIC),
    ("active", BOOL),
    ("lucky", INT4_ARRAY),
]
USERS = relation_info(relation(16401, "users", USER_COLUMNS), lambda oid, s, t: ("id",))
NAMES = USERS.column_names
TXN = TransactionInfo(xid=812, commit_lsn=0x16_B374D848, commit_time=T0)

BASE_ROW: dict[str, ColumnValue] = {
    "id": "42",
    "email": "a@example.com",
    "name": "Ada",
    "updated_at": "2024-05-06 07:08:09+00",
    "updated_by": None,
    "created_by": None,
    "password_hash": "PWHASH-0f3e9a",
    "api_key": "APIKEY-77c1d2",
    "client_secret": "CLSECRET-91be44",
    "ssn": "SSN-078-05-1120",
    "profile": '{"theme": "dark", "limits": {"daily": 5, "ratio": 0.25}, "beta": null}',
    "tags": '{admin,"two words",NULL}',
    "score": "98765432109876543210.0123456789",
    "active": "t",
    "lucky": "{7,13}",
}
SECRETS = ("PWHASH-0f3e9a", "APIKEY-77c1d2", "CLSECRET-91be44", "SSN-078-05-1120")


def row(**changes: ColumnValue) -> TupleData:
    values = {**BASE_ROW, **changes}
    return tuple(values[name] for name in NAMES)


def config(*tables: dict[str, Any], **sections: Any) -> Settings:
    data = {"source": {"dsn": "host=db"}, "tables": list(tables) or [{"name": "public.users"}]}
    return settings_from_mapping({**data, **sections}, env={})


USER_RULES: dict[str, Any] = {
    "name": "public.users",
    "entity_type": "user",
    "actor_columns": ["updated_by", "created_by"],
    "ignore_columns": ["updated_at"],
    "redact_columns": ["ssn"],
}


def mapper(rules: dict[str, Any] | None = None, **sections: Any) -> ActivityMapper:
    return ActivityMapper(config(rules or USER_RULES, **sections))


def insert(
    new: TupleData, *, rel: RelationInfo = USERS, seq: int = 0, txn: TransactionInfo = TXN
) -> RowChange:
    return RowChange(txn, seq, rel, "insert", None, new)


def update(
    old: TupleData | None,
    new: TupleData,
    old_kind: str | None = "O",
    *,
    rel: RelationInfo = USERS,
    unavailable: tuple[str, ...] = (),
) -> RowChange:
    return RowChange(TXN, 3, rel, "update", old, new, old_kind, unavailable)


def delete(old: TupleData, old_kind: str = "O", *, rel: RelationInfo = USERS) -> RowChange:
    return RowChange(TXN, 4, rel, "delete", old, None, old_kind)


def truncate(*, cascade: bool = False, restart_identity: bool = False) -> TableTruncate:
    return TableTruncate(TXN, 5, USERS, cascade, restart_identity)


def mapped(m: ActivityMapper, change: Any) -> ActivityRecord:
    record = m.map(change)
    assert record is not None
    return record


def load(text: str | None) -> Any:
    assert text is not None
    return json.loads(text, parse_float=Decimal)


# -- what every record carries -------------------------------------------------------------------


def test_record_carries_the_transaction_position_time_and_table() -> None:
    record = mapped(mapper(), insert(row(), seq=9))
    assert record.occurred_at == "2024-05-06T07:08:09.123456+00:00"
    assert record.commit_lsn == "16/B374D848"
    assert (record.xid, record.seq) == (812, 9)
    assert (record.source, record.schema_name, record.table_name) == ("database", "public", "users")


def test_category_comes_from_the_rules_with_data_change_as_default() -> None:
    assert mapped(mapper({**USER_RULES, "category": "security"}), insert(row())).category == (
        "security"
    )
    assert mapped(mapper(), insert(row())).category == "data_change"


def test_severity_is_chosen_per_operation() -> None:
    severity = {"insert": "notice", "update": "warning", "delete": "error", "truncate": "debug"}
    m = mapper({**USER_RULES, "severity": severity})
    got = {
        "insert": mapped(m, insert(row())).severity,
        "update": mapped(m, update(row(), row(email="b@x"))).severity,
        "delete": mapped(m, delete(row())).severity,
        "truncate": mapped(m, truncate()).severity,
    }
    assert got == severity


def test_unset_severities_take_the_config_defaults() -> None:
    m = mapper({"name": "public.users", "severity": {"update": "error"}})
    defaults = SeverityByOperation()
    assert mapped(m, insert(row())).severity == defaults.insert
    assert mapped(m, update(row(), row(email="b@x"))).severity == "error"
    assert mapped(m, delete(row())).severity == defaults.delete
    assert mapped(m, truncate()).severity == defaults.truncate


def test_action_template_fills_entity_type_operation_table_and_schema() -> None:
    m = mapper({**USER_RULES, "action": "{schema}.{table}:{entity_type}/{operation}"})
    assert mapped(m, update(row(), row(email="b@x"))).action == "public.users:user/update"
    assert mapped(m, truncate()).action == "public.users:user/truncate"


def test_entity_type_defaults_to_the_table_name() -> None:
    record = mapped(mapper({"name": "public.users"}), insert(row()))
    assert record.entity_type == "users"
    assert record.action == "users.insert"
    assert mapped(mapper(), insert(row())).entity_type == "user"


# -- entity id and actor -------------------------------------------------------------------------


def test_entity_id_of_a_single_column_key_is_its_text() -> None:
    assert mapped(mapper(), insert(row(id="42"))).entity_id == "42"
    assert mapped(mapper(), delete(row(id="43"))).entity_id == "43"


def test_entity_id_of_a_composite_key_is_a_json_array() -> None:
    rel = relation_info(
        relation(16410, "memberships", [("org_id", INT4), "role", "note"]),
        lambda oid, s, t: ("org_id", "role"),
    )
    m = mapper({"name": "public.memberships"})
    record = mapped(m, insert(("7", 'ad"min', "x"), rel=rel))
    assert json.loads(record.entity_id or "") == [7, 'ad"min']
    assert record.summary == 'memberships [7,"ad\\"min"] created (memberships.insert)'


def test_row_without_key_says_so_in_the_summary() -> None:
    rel = relation_info(relation(16411, "events", ["kind"]), lambda oid, s, t: None)
    record = mapped(mapper({"name": "public.events"}), insert(("login",), rel=rel))
    assert record.entity_id is None
    assert record.summary == "events (no key) created (events.insert)"


@pytest.mark.parametrize(
    ("change", "actor"),
    [
        (insert(row(updated_by="alice", created_by="bob")), "alice"),
        (insert(row(updated_by=None, created_by="bob")), "bob"),
        (update(row(updated_by="carol"), row(email="b@x", updated_by=None)), "carol"),
        (update(row(created_by="dan"), row(email="b@x", updated_by="erin")), "erin"),
        (delete(row(updated_by=None, created_by="fay")), "fay"),
        (insert(row(updated_by=None, created_by=None)), None),
    ],
    ids=["first-column", "second-column", "from-old-row", "new-row-first", "delete", "none"],
)
def test_actor_is_the_first_non_null_actor_column_of_new_then_old_row(
    change: RowChange, actor: str | None
) -> None:
    assert mapped(mapper(), change).actor_id == actor


def test_actor_column_missing_from_the_table_is_passed_over() -> None:
    m = mapper({**USER_RULES, "actor_columns": ["no_such_column", "created_by"]})
    assert mapped(m, insert(row(created_by="gus"))).actor_id == "gus"


# -- updates: changes, ignored columns, summary -------------------------------------------


def test_changes_hold_only_changed_columns_with_old_and_new() -> None:
    record = mapped(mapper(), update(row(), row(email="b@example.com", active="f")))
    assert load(record.changes) == {
        "email": {"old": "a@example.com", "new": "b@example.com"},
        "active": {"old": True, "new": False},
    }


def test_update_summary_names_the_entity_and_the_changed_columns() -> None:
    record = mapped(mapper(), update(row(), row(email="b@example.com")))
    assert record.summary == "user 42 updated: email (user.update)"


@pytest.mark.parametrize(
    ("change", "summary"),
    [
        (insert(row()), "user 42 created (user.insert)"),
        (delete(row()), "user 42 deleted (user.delete)"),
        (update(None, row(name="Bea"), None), "user 42 updated (user.update)"),
    ],
    ids=["insert", "delete", "update-without-old-row"],
)
def test_summary_reads_as_a_sentence(change: RowChange, summary: str) -> None:
    assert mapped(mapper(), change).summary == summary


def test_summary_names_the_actor_and_the_action_so_that_searching_the_summary_finds_them() -> None:
    # Full-text search covers the summary only by default (docs/store.md): what users search
    # for (the entity, who did it, the business action) must be in it.
    rules = {
        **USER_RULES,
        "rules": [{"column": "active", "from": True, "to": False, "action": "user.suspended"}],
    }
    change = update(row(), row(active="f", updated_by="17"))
    record = mapped(mapper(rules), change)
    assert record.action == "user.suspended"
    assert record.summary == "user 42 updated by 17: updated_by, active (user.suspended)"
    truncated = mapped(mapper(), truncate())
    assert truncated.summary == "public.users truncated (user.truncate)"


def test_update_touching_only_ignored_columns_makes_no_record() -> None:
    change = update(row(), row(updated_at="2024-05-07 00:00:00+00"))
    assert mapper().map(change) is None


def test_update_touching_an_ignored_and_another_column_lists_both() -> None:
    change = update(row(), row(updated_at="2024-05-07 00:00:00+00", name="Bea"))
    record = mapped(mapper(), change)
    assert load(record.changes) == {
        "name": {"old": "Ada", "new": "Bea"},
        "updated_at": {"old": "2024-05-06T07:08:09+00:00", "new": "2024-05-07T00:00:00+00:00"},
    }
    assert record.summary == "user 42 updated: name, updated_at (user.update)"


def test_update_without_ignore_columns_is_recorded_even_if_only_updated_at_changed() -> None:
    m = mapper({**USER_RULES, "ignore_columns": []})
    assert m.map(update(row(), row(updated_at="2024-05-07 00:00:00+00"))) is not None


def test_update_with_key_only_old_row_stores_just_the_key_as_old() -> None:
    old = tuple(value if name == "id" else None for name, value in zip(NAMES, row(), strict=True))
    record = mapped(mapper(), update(old, row(id="43"), "K"))
    assert load(record.old) == {"id": 42}
    assert load(record.new)["id"] == 43
    assert record.changes is None


def test_delete_with_key_only_old_row_stores_just_the_key_as_old() -> None:
    old = tuple(value if name == "id" else None for name, value in zip(NAMES, row(), strict=True))
    record = mapped(mapper(), delete(old, "K"))
    assert load(record.old) == {"id": 42}
    assert record.new is None


def test_unavailable_columns_and_origin_go_to_the_context() -> None:
    txn = TransactionInfo(812, 0x10, T0, origin="eu_node")
    change = RowChange(txn, 0, USERS, "update", None, row(), None, ("profile", "tags"))
    record = mapped(mapper(), change)
    assert load(record.context) == {"origin": "eu_node", "unavailable_columns": ["profile", "tags"]}


# -- redaction ---------------------------------------------------------------------------------


def every_text(record: ActivityRecord) -> str:
    return "\n".join(str(value) for value in record)


@pytest.mark.parametrize(
    "change",
    [
        insert(row()),
        delete(row()),
        update(
            row(),
            row(
                password_hash="PWHASH-new",
                api_key="APIKEY-new",
                client_secret="CLSECRET-new",
                ssn="SSN-new",
                email="b@x",
            ),
        ),
    ],
    ids=["insert", "delete", "update"],
)
def test_redacted_values_appear_nowhere_in_the_record(change: RowChange) -> None:
    record = mapped(mapper(), change)
    text = every_text(record)
    for secret in (*SECRETS, "PWHASH-new", "APIKEY-new", "CLSECRET-new", "SSN-new"):
        assert secret not in text
    for document in (record.old, record.new):
        if document is not None:
            values = load(document)
            for column in ("password_hash", "api_key", "client_secret", "ssn"):
                assert values[column] == "[redacted]"
    assert "a@example.com" in text, "columns that are not secret are kept"


def test_changed_redacted_column_is_listed_with_markers_only() -> None:
    record = mapped(mapper(), update(row(), row(api_key="APIKEY-rotated")))
    assert load(record.changes) == {"api_key": {"old": "[redacted]", "new": "[redacted]"}}
    assert record.summary == "user 42 updated: api_key (user.update)"


@pytest.mark.parametrize(
    "column",
    [
        "Password",
        "user_passwd",
        "apikey",
        "github_token_hash",
        "signing_private_key",
        "OTP_SEED",
        "webhook_secret",
    ],
)
def test_default_patterns_redact_columns_by_name_in_any_case(column: str) -> None:
    rel = relation_info(relation(16420, "creds", [("id", INT4), column]), lambda oid, s, t: ("id",))
    record = mapped(mapper({"name": "public.creds"}), insert(("1", "VALUE-xyz"), rel=rel))
    assert load(record.new) == {"id": 1, column: "[redacted]"}


def test_redaction_patterns_and_marker_can_be_replaced() -> None:
    m = mapper(redaction={"patterns": [r"e?mail"], "marker": "***"})
    values = load(mapped(m, insert(row())).new)
    assert values["email"] == "***"
    assert values["ssn"] == "***", "redact_columns of the table still apply"
    assert values["password_hash"] == "PWHASH-0f3e9a", "default patterns were replaced"


@settings(max_examples=50)
@given(secret=st.text(string.ascii_letters + string.digits, min_size=10, max_size=30))
def test_any_secret_in_a_redacted_column_stays_out_of_the_record(secret: str) -> None:
    baseline = every_text(mapped(mapper(), update(row(), row(email="b@x"))))
    assume(secret not in baseline)  # e.g. digits that happen to occur in another column
    change = update(row(), row(password_hash=secret, ssn=secret, email="b@x"))
    assert secret not in every_text(mapped(mapper(), change))


def test_redacted_key_column_stays_out_of_the_summary() -> None:
    rel = relation_info(
        relation(16430, "sessions", ["token_hash", ("user_id", INT4)]),
        lambda oid, s, t: ("token_hash",),
    )
    change = delete(("TOKHASH-5a1c", "9"), "O", rel=rel)
    record = mapped(mapper({"name": "public.sessions"}), change)
    assert load(record.old) == {"token_hash": "[redacted]", "user_id": 9}
    assert "TOKHASH-5a1c" not in (record.summary or "")
    assert "TOKHASH-5a1c" not in (record.entity_id or "")


# -- JSON documents ---------------------------------------------------------------------------


def test_row_documents_hold_typed_json_values() -> None:
    record = mapped(mapper(), insert(row(name=None, updated_by="alice")))
    assert load(record.new) == {
        "id": 42,
        "email": "a@example.com",
        "name": None,
        "updated_at": "2024-05-06T07:08:09+00:00",
        "updated_by": "alice",
        "created_by": None,
        "password_hash": "[redacted]",
        "api_key": "[redacted]",
        "client_secret": "[redacted]",
        "ssn": "[redacted]",
        "profile": {
            "theme": "dark",
            "limits": {"daily": 5, "ratio": Decimal("0.25")},
            "beta": None,
        },
        "tags": ["admin", "two words", None],
        "score": Decimal("98765432109876543210.0123456789"),
        "active": True,
        "lucky": [7, 13],
    }
    assert record.old is None and record.changes is None


def test_column_names_that_need_escaping_give_valid_json() -> None:
    rel = relation_info(
        relation(16440, "odd", [("id", INT4), 'we"ird\\name', "tab\tcol"]),
        lambda oid, s, t: ("id",),
    )
    record = mapped(mapper({"name": "public.odd"}), insert(("1", "a", "b"), rel=rel))
    assert load(record.new) == {"id": 1, 'we"ird\\name': "a", "tab\tcol": "b"}


def test_changes_after_a_new_relation_version_use_the_new_column_names() -> None:
    m = mapper({"name": "public.t"})
    v1 = relation_info(relation(16450, "t", [("id", INT4), "a"]), lambda oid, s, t: ("id",))
    v2 = relation_info(
        relation(16450, "t", [("id", INT4), "b", ("c", INT4)]), lambda oid, s, t: ("id",)
    )
    assert load(mapped(m, insert(("1", "x"), rel=v1)).new) == {"id": 1, "a": "x"}
    assert load(mapped(m, insert(("2", "y", "3"), rel=v2)).new) == {"id": 2, "b": "y", "c": 3}


# -- truncate and non-row changes ----------------------------------------------------------------


def test_truncate_makes_one_record_for_the_table() -> None:
    record = mapped(mapper(), truncate(cascade=True))
    assert record.operation == "truncate"
    assert record.action == "user.truncate"
    assert record.severity == "critical"
    assert record.summary == "public.users truncated (user.truncate)"
    assert (record.entity_id, record.actor_id, record.old, record.new, record.changes) == (
        None,
        None,
        None,
        None,
        None,
    )
    assert load(record.context) == {"cascade": True}
    assert mapped(mapper(), truncate()).context is None
    assert load(mapped(mapper(), truncate(restart_identity=True)).context) == {
        "restart_identity": True
    }


def test_messages_and_transaction_ends_make_no_record() -> None:
    m = mapper()
    assert m.map(TransactionMessage(TXN, 0, "app", b"x", 0x10)) is None
    assert m.map(TransactionEnd(TXN, 0x20, 1)) is None


def test_table_without_rules_uses_the_config_default_severities() -> None:
    other = relation_info(relation(16460, "audit_extra", [("id", INT4)]), lambda oid, s, t: ("id",))
    m = mapper()
    record = mapped(m, TableTruncate(TXN, 0, other, False, False))
    assert record.severity == SeverityByOperation().truncate

"""What the JetStream sink publishes and ``cdc ingest`` reads back
(cdc.pipeline.jetstream_messages): subjects, message ids, and payloads that return the exact
record, JSON text included."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdc.config import settings_from_mapping
from cdc.errors import ConfigError
from cdc.pipeline.activity import ActivityRecord
from cdc.pipeline.jetstream import connect_options
from cdc.pipeline.jetstream_messages import (
    PayloadError,
    decode_payload,
    encode_payload,
    message_id,
    subject_for,
    subject_token,
)

# JSON documents as the mapping writes them: any nesting, numbers with their exact digits.
json_numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.decimals(allow_nan=False, allow_infinity=False, places=6).map(str),
    st.sampled_from(["1.50", "0.000", "-0.0", "123456789012345678.123456789012345678"]),
)
json_scalars = st.one_of(
    st.none().map(lambda _: "null"),
    st.booleans().map(lambda b: "true" if b else "false"),
    st.text().map(lambda s: json.dumps(s, ensure_ascii=False)),
    json_numbers,
)
json_docs = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda items: "[" + ", ".join(items) + "]"),
        st.dictionaries(st.text(max_size=8), inner, max_size=4).map(
            lambda d: (
                "{"
                + ", ".join(f"{json.dumps(k, ensure_ascii=False)}: {v}" for k, v in d.items())
                + "}"
            )
        ),
    ),
    max_leaves=12,
)
optional_text = st.none() | st.text()
records = st.builds(
    ActivityRecord,
    occurred_at=st.just("2026-12-04T15:20:14.123456+00:00"),
    source=st.sampled_from(["database", "application", "migration", "shadow"]),
    operation=st.sampled_from(["insert", "update", "delete", "truncate", "message"]),
    action=st.text(min_size=1),
    category=st.text(),
    severity=st.sampled_from(["info", "warning", "critical"]),
    schema_name=optional_text,
    table_name=optional_text,
    entity_type=optional_text,
    entity_id=optional_text,
    actor_id=optional_text,
    context=st.none() | json_docs,
    old=st.none() | json_docs,
    new=st.none() | json_docs,
    changes=st.none() | json_docs,
    summary=optional_text,
    xid=st.none() | st.integers(min_value=0, max_value=2**63 - 1),
    commit_lsn=st.sampled_from(["0/0", "16/B374D848", "FFFFFFFF/FFFFFFFF"]),
    seq=st.integers(min_value=0, max_value=2**31 - 1),
)


@given(records)
def test_a_payload_returns_the_record_with_its_json_text_unchanged(record: ActivityRecord) -> None:
    assert decode_payload(encode_payload(record, "platform")) == record


@given(records)
def test_a_payload_is_one_json_object_a_consumer_can_parse(record: ActivityRecord) -> None:
    document = json.loads(encode_payload(record, "platform"))
    assert document["source_database"] == "platform"
    assert document["seq"] == record.seq
    if record.new is not None:
        assert document["new"] == json.loads(record.new)
    else:
        assert "new" not in document


@given(st.binary())
def test_arbitrary_bytes_raise_only_the_payload_error(data: bytes) -> None:
    with contextlib.suppress(PayloadError):
        decode_payload(data)


def test_subject_tokens_escape_what_a_subject_cannot_hold() -> None:
    assert subject_token("accounts") == "accounts"
    assert subject_token("odd.table") == "odd%2Etable"
    assert subject_token("a b*>") == "a%20b%2A%3E"
    assert subject_token("ü") == "%C3%BC"
    assert subject_token(None) == "_"


@given(st.text(min_size=1))
def test_a_subject_token_never_holds_a_separator_or_wildcard(name: str) -> None:
    token = subject_token(name)
    assert token and not any(ch in token for ch in ". *>\t\r\n")


def test_subject_and_message_id_name_the_source_and_the_change() -> None:
    record = ActivityRecord(
        "t", "database", "update", "a", "c", "info", "public", "accounts", None, "1", None,
        None, None, None, None, None, 5, "0/16B3740", 3,
    )  # fmt: skip
    assert subject_for("activity", "platform", record) == "activity.platform.public.accounts.update"
    assert message_id("7300", "activity_cdc", record) == "7300:activity_cdc:0/16B3740:3"


def _settings(sink: dict[str, object], env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return settings_from_mapping(
        {"source": {"dsn": "dbname=x"}, "sink": sink, "tables": [{"name": "public.t"}]},
        env=env or {},
    )


def test_a_jetstream_sink_needs_servers() -> None:
    with pytest.raises(ConfigError, match="needs the NATS servers"):
        _settings({"kind": "jetstream"})


def test_servers_come_from_the_environment_too() -> None:
    settings = _settings(
        {"kind": "jetstream"}, {"CDC_NATS_SERVERS": "nats://a:4222, nats://b:4222"}
    )
    assert settings.sink.servers == ("nats://a:4222", "nats://b:4222")


def test_a_server_url_with_credentials_is_refused_without_echoing_them() -> None:
    with pytest.raises(ConfigError) as caught:
        _settings({"kind": "jetstream", "servers": ["nats://user:hunter2@host:4222"]})
    assert "hunter2" not in str(caught.value)
    assert "CDC_NATS_PASSWORD" in str(caught.value)


def test_credentials_are_taken_from_the_environment() -> None:
    sink = _settings({"kind": "jetstream", "servers": ["nats://h:4222"]}).sink
    assert (
        connect_options(sink, {"CDC_NATS_USER": "u", "CDC_NATS_PASSWORD": "p"})["password"] == "p"
    )
    assert connect_options(sink, {"CDC_NATS_TOKEN": "t"})["token"] == "t"
    assert connect_options(sink, {"CDC_NATS_CREDS": "/c"})["user_credentials"] == "/c"

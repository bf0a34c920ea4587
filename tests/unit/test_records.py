"""One list of record columns (cdc/records.py) for the sink's records and the store's."""

from __future__ import annotations

from dataclasses import fields

import pytest

from cdc.pipeline.activity import RECORD_COLUMNS, ActivityRecord
from cdc.records import STORED_COLUMNS, same_columns
from cdc.store.model import StoredRecord


def test_both_record_types_have_the_columns_of_the_one_list_in_its_order() -> None:
    assert ActivityRecord._fields == RECORD_COLUMNS
    assert tuple(f.name for f in fields(StoredRecord)) == STORED_COLUMNS
    assert [c for c in STORED_COLUMNS if c != "recorded_at"] == list(RECORD_COLUMNS)


def test_a_record_type_that_drifts_from_the_list_is_refused() -> None:
    with pytest.raises(TypeError, match="are not the record columns"):
        same_columns("Record", ("occurred_at", "source"), ("source", "occurred_at"))

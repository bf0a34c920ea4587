"""The sink database goes away for ten seconds while the source keeps committing changes.

The sink is a second throwaway cluster (``EmbeddedPostgres``), separate from the source, so
stopping it leaves the source and its slot alone. The daemon (a real ``cdc run`` process) must
keep running and retry with backoff, must not acknowledge anything it has not written while
the sink is down (the slot's ``confirmed_flush_lsn`` stays put), and once the sink is back it
must catch up: every committed change recorded exactly once.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cdc.config import settings_from_mapping
from cdc.control.setup import setup
from cdc.demo.embedded import EmbeddedPostgres
from cdc.lsn import Lsn, format_lsn
from tests.integration.test_resilience import (
    EVENTS,
    Writer,
    daemon_process,
    query,
    slot_state,
    wait_for,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.crash]

SLOT = "sink_down"
DOWN_S = 10.0
# The run that was streaming when the sink went away notices at its next write (the writer
# commits every few ms, batches wait at most 50 ms); after this, nothing may move.
SETTLE_S = 2.0


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_sink_down_for_ten_seconds_nothing_is_acknowledged_and_the_daemon_catches_up(
    mode: str, tmp_path: Path
) -> None:
    with EmbeddedPostgres() as source, EmbeddedPostgres() as sink:
        query(source.dsn, EVENTS)
        tables = [{"name": "public.events"}]
        settings = settings_from_mapping(
            {
                "source": {"dsn": source.dsn, "slot": SLOT, "publication": SLOT},
                "sink": {"dsn": sink.dsn},
                "tables": tables,
            },
            env={},
        )
        setup(settings)  # the store on the sink cluster, publication and slot on the source
        config = write_config(
            tmp_path / "cdc.toml",
            source.dsn,
            SLOT,
            SLOT,
            "status_interval_ms = 500\n"  # still [source]: acknowledgements show at once
            f"[sink]\ndsn = '{sink.dsn}'\n"
            "[batch]\nmax_rows = 200\nmax_delay_ms = 50\n"
            "[daemon]\nreconnect_initial_s = 0.2\nreconnect_max_s = 2\nslot_watch_interval_s = 0\n"
            "[[tables]]\nname = 'public.events'\n",
        )

        def recorded() -> int:
            return int(query(sink.dsn, "SELECT count(*) FROM activity.records")[0][0])

        def confirmed() -> int:
            return Lsn.parse(slot_state(source.dsn, SLOT)[2])

        with (
            daemon_process(config, tmp_path / "daemon.log") as daemon,
            Writer(source.dsn) as writer,
        ):
            wait_for("the daemon records the writer's rows", lambda: recorded() > 100)
            committed_before = writer.committed
            sink.stop_server(mode)
            down_at = time.monotonic()
            samples: list[tuple[float, int]] = []  # (seconds since the sink went down, LSN)
            while time.monotonic() - down_at < DOWN_S:
                assert daemon.proc.poll() is None, "the daemon exited while the sink was down"
                samples.append((time.monotonic() - down_at, confirmed()))
                time.sleep(0.2)
            (wal_at_restart,) = query(source.dsn, "SELECT pg_current_wal_lsn()::text")[0]
            committed_while_down = writer.committed - committed_before
            restarted_at = datetime.now(UTC)
            sink.start()
            (rows_at_restart,) = query(source.dsn, "SELECT count(*) FROM public.events")[0]
            wait_for(
                "the daemon catches up once the sink is back",
                lambda: recorded() >= rows_at_restart,
                timeout_s=90,
            )
            writer.stop()
            (rows,) = query(source.dsn, "SELECT count(*) FROM public.events")[0]
            wait_for("everything is recorded", lambda: recorded() >= rows, timeout_s=60)
            assert daemon.stop() == 0, daemon.output()
        output = daemon.output()

        # It kept running and retried with backoff, connecting to the sink again and again.
        assert committed_while_down > 100, "the writer was not writing while the sink was down"
        assert "cannot connect to the sink database" in output, output[-3000:]
        assert output.count("reconnecting in") >= 3, output[-3000:]
        assert "attempt 3" in output, output[-3000:]

        # Nothing new was acknowledged while the sink was down: after the run that was
        # streaming noticed, the slot did not move at all, though the WAL did.
        settled = {lsn for at, lsn in samples if at >= SETTLE_S}
        assert len(settled) == 1, [(round(at, 1), format_lsn(lsn)) for at, lsn in samples]
        highest = max(lsn for _, lsn in samples)
        assert Lsn.parse(wal_at_restart) > highest
        # ... and what it had acknowledged was durable in the sink before it went down: no
        # change at or below an acknowledged position was written after the sink came back.
        (late, after) = query(
            sink.dsn,
            "SELECT count(*) FILTER (WHERE commit_lsn < %s::pg_lsn), count(*) "
            "FROM activity.records WHERE recorded_at >= %s",
            (format_lsn(highest), restarted_at),
        )[0]
        assert late == 0, f"{late} records acknowledged before they were written"
        assert after >= committed_while_down  # the changes of the downtime came afterwards

        # Caught up exactly: every row of the source once, nothing else.
        ids = sorted(str(row[0]) for row in query(source.dsn, "SELECT id FROM public.events"))
        entity_ids = sorted(
            row[0]
            for row in query(
                sink.dsn,
                "SELECT entity_id FROM activity.records "
                "WHERE operation = 'insert' AND table_name = 'events'",
            )
        )
        assert recorded() == len(ids) == rows
        assert entity_ids == ids
        # and the slot is acknowledged through the last checkpoint
        (end_lsn,) = query(sink.dsn, "SELECT end_lsn::text FROM activity.checkpoints")[0]
        assert confirmed() >= Lsn.parse(end_lsn)

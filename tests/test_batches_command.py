"""`filegate batches`: what an operator sees for each batch, read from a real store and the local Jobs API."""

from __future__ import annotations

from datetime import date

import pytest

from filegate.batches_command import describe_batch, format_rows, list_batches, run_state
from filegate.cli import main
from tests.faults.world import World
from tests.test_batches import MEMBERS, SAMPLES, batch_pieces, deliver, member_name, trigger_name


def test_batches_lists_sealed_waiting_and_blocked_batches(world: World) -> None:
    gate = world.gate()
    sealed, waiting, blocked = date(2025, 4, 1), date(2025, 4, 2), date(2025, 1, 16)
    for name, data in batch_pieces(sealed).items():
        deliver(gate, world.upload(name, data))
    deliver(gate, world.upload(trigger_name(waiting), batch_pieces(waiting)[trigger_name(waiting)]))
    deliver(gate, world.upload(member_name("orders", waiting), batch_pieces(waiting)[member_name("orders", waiting)]))
    bad = (SAMPLES / "bad" / member_name("customers", blocked)).read_bytes()
    deliver(gate, world.upload(member_name("customers", blocked), bad))
    deliver(gate, world.upload(trigger_name(blocked), (SAMPLES / trigger_name(blocked)).read_bytes()))

    rows = [describe_batch(gate, batch) for batch in list_batches(gate)]

    assert [(r.business_date, r.state) for r in rows] == [
        ("2025-01-16", "blocked"),
        ("2025-04-01", "sealed"),
        ("2025-04-02", "waiting"),
    ]
    assert rows[0].blocked[0].startswith("customers: ")
    assert rows[0].blocked[0].endswith(".report.json")
    assert rows[1].revision == 1
    assert rows[1].run_id is not None
    assert rows[1].present == MEMBERS
    assert rows[2].present == ("orders",)
    assert rows[2].missing == tuple(d for d in MEMBERS if d != "orders")
    assert run_state(gate, rows[1].run_id) in ("running", "succeeded")
    table = format_rows(rows)
    assert "blocked by customers: " in table
    assert str(rows[1].run_id) in table
    assert [describe_batch(gate, b).business_date for b in list_batches(gate, since=date(2025, 4, 2))] == ["2025-04-02"]


def test_batches_is_a_filegate_command_with_its_own_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "batches" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        main(["batches", "--help"])
    assert exited.value.code == 0
    assert "--pipeline" in capsys.readouterr().out

"""Ledger arithmetic, property-based: whatever money commands are tried on a case (refused ones included), the
recovered never exceeds what was ordered back, which never exceeds what was paid out, and the ledger's totals per
case and over many cases equal the sums of the events."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import DomainError
from projections.ledger import fold, to_cny, to_fen
from tests.support import STAFF
from tests.unit.case_steps import Steps

AMOUNTS = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("3000.00"), places=2)
COMMANDS = st.lists(st.one_of(
    st.tuples(st.just("grant"), AMOUNTS, st.sampled_from(["national_grant", "tuition_waiver", "emergency_aid"])),
    st.tuples(st.just("disburse"), AMOUNTS),
    st.tuples(st.just("revoke"), st.booleans()),
    st.tuples(st.just("order"), AMOUNTS),
    st.tuples(st.just("recover"), AMOUNTS),
), max_size=25)
EVENT_FIELD = {"AidGranted": "granted_fen", "FundsDisbursed": "disbursed_fen",
               "FundsRecoveryOrdered": "recovery_ordered_fen", "FundsRecovered": "recovered_fen"}


def run(steps: Steps, command: tuple[Any, ...]) -> None:
    """Tries one command; a refusal is part of the game (it must leave everything unchanged)."""
    case, now = steps.case, steps.now()
    actions: dict[str, Callable[[], None]] = {
        "grant": lambda: steps.grant(str(command[1]), programme=command[2]),
        "disburse": lambda: steps.disburse(str(command[1])),
        "revoke": lambda: steps.revoke(dishonest=command[1]),
        "order": lambda: case.order_recovery(amount=str(command[1]), actor=STAFF, now=now),
        "recover": lambda: case.record_recovery(amount=str(command[1]), actor=STAFF, now=now),
    }
    try:
        actions[command[0]]()
    except DomainError:
        assert case.collect_events() == []
    steps.collect()


def play(seq: int, commands: list[tuple[Any, ...]]) -> Steps:
    steps = Steps.apply(seq).confirmed()
    for command in commands:
        run(steps, command)
    return steps


def sums(events: list[Any]) -> dict[str, int]:
    totals = dict.fromkeys(EVENT_FIELD.values(), 0)
    for event in events:
        field = EVENT_FIELD.get(type(event).__name__)
        if field:
            totals[field] += to_fen(event.amount)
    return totals


@settings(max_examples=150, deadline=None)
@given(commands=COMMANDS)
def test_recovered_never_exceeds_owed_and_the_row_equals_the_sum_of_its_events(
        commands: list[tuple[Any, ...]]) -> None:
    steps = play(1, commands)
    row = fold("case-1", steps.events)
    assert row is not None
    assert 0 <= row["recovered_fen"] <= row["recovery_ordered_fen"] <= row["disbursed_fen"] <= row["granted_fen"]
    assert row["granted_fen"] == row["granted_regular_fen"] + row["emergency_fen"]
    assert {k: row[k] for k in EVENT_FIELD.values()} == sums(steps.events)
    case = steps.case
    assert (to_cny(row["granted_fen"]), to_cny(row["disbursed_fen"]), to_cny(row["recovery_ordered_fen"]),
            to_cny(row["recovered_fen"])) == (case.granted, case.disbursed, case.recovery_ordered, case.recovered)
    assert to_cny(row["recovery_ordered_fen"] - row["recovered_fen"]) == case.outstanding >= 0
    assert row["status"] == case.status.value


@settings(max_examples=40, deadline=None)
@given(per_case=st.lists(COMMANDS, min_size=1, max_size=4))
def test_totals_over_many_cases_equal_the_sum_of_all_their_events(per_case: list[list[tuple[Any, ...]]]) -> None:
    cases = [play(seq, commands) for seq, commands in enumerate(per_case, start=1)]
    rows = [fold(str(s.case.id), s.events) for s in cases]
    every_event = [e for s in cases for e in s.events]
    totals = {k: sum(r[k] for r in rows if r is not None) for k in EVENT_FIELD.values()}
    assert totals == sums(every_event)


def test_fen_conversion_is_exact_for_any_two_decimal_amount() -> None:
    for text in ("0.01", "0.10", "1.00", "1234567.89", "99999999999.99"):
        assert to_cny(to_fen(Decimal(text))) == Decimal(text)
    assert to_fen(Decimal("0.1") + Decimal("0.2")) == 30  # no binary float anywhere


def test_a_revoked_case_leaves_the_aid_statuses_but_keeps_its_money_in_the_ledger() -> None:
    steps = Steps.apply(1).confirmed().grant("2000.00").disburse("1500.00").revoke(dishonest=True)
    row = fold("case-1", steps.events)
    assert row is not None and row["status"] == "revoked"
    assert row["disbursed_fen"] == 150000 and row["recovery_ordered_fen"] == 0

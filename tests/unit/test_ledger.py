"""Ledger arithmetic, property-based: whatever money commands are tried on a case (refused ones included), the
recovered never exceeds what was ordered back, which never exceeds what was paid out, and the ledger's totals per
case and over many cases equal the sums of the events."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from domain.errors import DomainError
from projections.ledger import fold, to_cny, to_fen
from tests.support import STAFF
from tests.unit.case_steps import Steps

AMOUNTS = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("3000.00"), places=2)
# An amount is either a share of what the command could take at that moment (mostly accepted) or any amount
# (often refused): both kinds of attempt must keep the arithmetic right.
SIZES = st.one_of(st.tuples(st.just("share"), st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1.2"),
                                                          places=2)),
                  st.tuples(st.just("amount"), AMOUNTS))
PROGRAMMES = st.sampled_from(["national_grant", "tuition_waiver", "emergency_aid"])
BEFORE = st.lists(st.one_of(st.tuples(st.just("grant"), SIZES, PROGRAMMES), st.tuples(st.just("disburse"), SIZES)),
                  max_size=8)
AFTER = st.lists(st.one_of(st.tuples(st.just("order"), SIZES), st.tuples(st.just("recover"), SIZES),
                           st.tuples(st.just("disburse"), SIZES), st.tuples(st.just("grant"), SIZES, PROGRAMMES)),
                 max_size=8)
COMMANDS = st.builds(lambda before, revoke, after: [*before, *revoke, *after], BEFORE,
                     st.one_of(st.just([]), st.tuples(st.just("revoke"), st.booleans()).map(lambda c: [c])), AFTER)
EVENT_FIELD = {"AidGranted": "granted_fen", "FundsDisbursed": "disbursed_fen",
               "FundsRecoveryOrdered": "recovery_ordered_fen", "FundsRecovered": "recovered_fen"}


def amount_for(steps: Steps, kind: str, size: tuple[str, Decimal]) -> str:
    if size[0] == "amount":
        return str(size[1])
    case = steps.case
    room = {"grant": Decimal("2000.00"), "disburse": case.granted - case.disbursed,
            "order": case.disbursed - case.recovery_ordered, "recover": case.outstanding}[kind]
    return str(max((room * size[1]).quantize(Decimal("0.01")), Decimal("0.01")))


def run(steps: Steps, command: tuple[Any, ...]) -> None:
    """Tries one command; a refusal is part of the game (it must leave everything unchanged)."""
    case, now, kind = steps.case, steps.now(), command[0]
    amount = amount_for(steps, kind, command[1]) if kind != "revoke" else ""
    actions: dict[str, Callable[[], None]] = {
        "grant": lambda: steps.grant(amount, programme=command[2]),
        "disburse": lambda: steps.disburse(amount),
        "revoke": lambda: steps.revoke(dishonest=command[1]),
        "order": lambda: case.order_recovery(amount=amount, actor=STAFF, now=now),
        "recover": lambda: case.record_recovery(amount=amount, actor=STAFF, now=now),
    }
    try:
        actions[kind]()
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


FULL_COURSE = [("grant", ("amount", Decimal("2000.00")), "national_grant"), ("disburse", ("share", Decimal("0.75"))),
               ("revoke", True), ("order", ("share", Decimal("1"))), ("recover", ("share", Decimal("0.4"))),
               ("recover", ("amount", Decimal("9999.00"))), ("recover", ("share", Decimal("1")))]


@settings(max_examples=150, deadline=None)
@given(commands=COMMANDS)
@example(commands=FULL_COURSE)
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


def test_the_full_course_recovers_in_parts_to_nothing_owed() -> None:
    steps = play(1, FULL_COURSE)
    row = fold("case-1", steps.events)
    assert row is not None
    assert (row["disbursed_fen"], row["recovery_ordered_fen"], row["recovered_fen"]) == (150000, 150000, 150000)
    assert [type(e).__name__ for e in steps.events].count("FundsRecovered") == 2


def test_fen_conversion_is_exact_for_any_two_decimal_amount() -> None:
    for text in ("0.01", "0.10", "1.00", "1234567.89", "99999999999.99"):
        assert to_cny(to_fen(Decimal(text))) == Decimal(text)
    assert to_fen(Decimal("0.1") + Decimal("0.2")) == 30  # no binary float anywhere


def test_a_revoked_case_leaves_the_aid_statuses_but_keeps_its_money_in_the_ledger() -> None:
    steps = Steps.apply(1).confirmed().grant("2000.00").disburse("1500.00").revoke(dishonest=True)
    row = fold("case-1", steps.events)
    assert row is not None and row["status"] == "revoked"
    assert row["disbursed_fen"] == 150000 and row["recovery_ordered_fen"] == 0

"""The notice board never shows a forbidden field (Guangxi Art. 8(5)): a property test over random cases.

Random applications carry every kind of personal data a form may hold (ID number and so date of birth, address,
phones, parents' names and phones, special-group categories) and go through the domain's own commands; some
are publicised, objected to, re-rated or exempted. Their events are applied by the notices view to an in-memory
database and the board is read with the same query the service uses. Whatever the mix, the board shows exactly
the cases whose window is open, with name, grade/class and level only, and none of the forbidden values appears
anywhere in it, nor anywhere in the view's table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import MetaData, create_engine, select

from adapters.exports import CATEGORY_NAMES
from api.schemas import plain
from domain.values import Actor, Category, Level, Role
from projections.notices import BOARD_FIELDS, Notices, board_entries
from projections.runner import Envelope
from tests.support import GX_SCHOOL, STAFF, id_number
from tests.unit.case_steps import LEVELS, PROFILE, Steps

TODAY = date(2025, 9, 17)
STUDENT_CHARS = "韦李王张刘陈黄明华芳"
PARENT_CHARS = "赵钱孙周吴郑冯褚卫"
ADDRESS_CHARS = "路街巷号省市县村组"
CLASSES = ("G10-1", "G10-3", "G11-2", "G12-5")
ALLOWED_COLUMNS = {"case_id", "academic_year", "school_id", "class_id", "student_name", "level", "status",
                   "exempted", "notice_id", "starts_on", "ends_on", "open_objections", "version", "position"}


@dataclass
class Spec:
    name: str
    class_id: str
    born: date
    address: str
    phones: list[str]
    parents: list[str]
    claimed: list[str]
    level: Level
    fate: str  # rated | noticed | noticed_later | objected | upheld | exempted
    objector: str
    grounds: str


phones = st.text("0123456789", min_size=10, max_size=10).map(lambda s: "1" + s)
specs = st.builds(
    Spec,
    name=st.text(STUDENT_CHARS, min_size=2, max_size=4),
    class_id=st.sampled_from(CLASSES),
    born=st.dates(date(1996, 1, 1), date(2015, 12, 31)),
    address=st.text(ADDRESS_CHARS, min_size=4, max_size=12),
    phones=st.lists(phones, min_size=1, max_size=3),
    parents=st.lists(st.text(PARENT_CHARS, min_size=2, max_size=3), min_size=1, max_size=2),
    claimed=st.lists(st.sampled_from([c.value for c in Category]), max_size=3, unique=True),
    level=st.sampled_from(list(Level)),
    fate=st.sampled_from(["rated", "noticed", "noticed_later", "objected", "upheld", "exempted"]),
    objector=st.text("abcdefghij", min_size=6, max_size=10).map(lambda s: "objector-" + s),
    grounds=st.text("缺漏瞒报收入车房", min_size=3, max_size=8).map(lambda s: "理由" + s),
)


def application(seq: int, spec: Spec) -> dict[str, Any]:
    members = [{"relation": "father" if i == 0 else "mother", "age": 45, "occupation": "farmer",
                "health": "healthy", "annual_income": "9000.00", "name": parent, "phone": spec.phones[-1]}
               for i, parent in enumerate(spec.parents)]
    return {
        "academic_year": "2025-2026",
        "student": {"id_number": id_number(seq, born=spec.born.strftime("%Y%m%d")), "name": spec.name,
                    "school_id": GX_SCHOOL, "class_id": spec.class_id, "stage": "senior_secondary",
                    "phone": spec.phones[0], "date_of_birth": spec.born.isoformat()},
        "household": {"region_code": "450103", "size": 2 + len(members), "annual_income": "18000.00",
                      "debts": "0.00", "address": spec.address, "members": members},
        "claimed_categories": spec.claimed,
        "attestation": True,
    }


def drive(seq: int, spec: Spec) -> Steps:
    """The case through the domain's commands up to its fate; returns the steps with every event."""
    form = application(seq, spec)
    steps = Steps.apply(seq, **{k: v for k, v in form.items() if k != "claimed_categories"},
                        claimed=spec.claimed)
    steps.verify(*spec.claimed).assess(spec.level).evaluate(spec.level).rate(spec.level)
    if spec.fate == "exempted":
        steps.case.exempt_publicity(ground="urgent", allowed=True, allowed_grounds=frozenset({"urgent"}),
                                    profile_version=PROFILE, actor=STAFF, now=steps.now())
        steps.collect()
        return steps
    if spec.fate == "rated":
        return steps
    starts = TODAY + timedelta(days=5) if spec.fate == "noticed_later" else TODAY - timedelta(days=2)
    steps.publicize(starts_on=starts, ends_on=starts + timedelta(days=6))
    if spec.fate in {"objected", "upheld"}:
        steps.case.raise_objection(objection_id=f"o{seq}", grounds=spec.grounds, objector="hmac-sha256:x",
                                   today=TODAY, actor=Actor(spec.objector, Role.APPLICANT), now=steps.now())
        steps.collect()
    if spec.fate == "upheld":
        steps.case.resolve_objection(objection_id=f"o{seq}", outcome="upheld", reason="复核", new_level=None,
                                     levels=LEVELS, actor=STAFF, now=steps.now())
        steps.collect()
    return steps


def forbidden_values(seq: int, spec: Spec) -> list[str]:
    number = id_number(seq, born=spec.born.strftime("%Y%m%d"))
    values = [number, number[:17], spec.born.isoformat(), spec.born.strftime("%Y%m%d"), spec.address,
              spec.objector, spec.grounds, *spec.phones, *spec.parents]
    for category in spec.claimed:
        values += [category, CATEGORY_NAMES[category]]
    return values


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(specs, min_size=1, max_size=6))
def test_the_board_never_shows_a_forbidden_field(cases: list[Spec]) -> None:
    view = Notices()
    tables = view.define_tables(MetaData(), "_g1")
    table = tables["notices"]
    engine = create_engine("sqlite://")
    position = 0
    batch: list[Envelope] = []
    driven = [drive(seq, spec) for seq, spec in enumerate(cases, start=1)]
    for steps in driven:
        for domain_event in steps.events:
            position += 1
            batch.append(Envelope(position=position, topic="", event=domain_event))
    with engine.begin() as conn:
        table.create(conn)
        view.handle(conn, tables, batch)
        entries = board_entries(conn, table, GX_SCHOOL, TODAY)
        stored = [dict(r._mapping) for r in conn.execute(select(table))]
    engine.dispose()

    assert set(table.columns.keys()) <= ALLOWED_COLUMNS
    board_text = json.dumps(plain({"entries": entries}), ensure_ascii=False)
    stored_text = json.dumps(plain(stored), ensure_ascii=False)
    for seq, spec in enumerate(cases, start=1):
        for value in forbidden_values(seq, spec):
            assert value not in board_text, (spec.fate, value)
            assert value not in stored_text, (spec.fate, value)

    assert all(tuple(entry) == BOARD_FIELDS for entry in entries)
    shown = sorted((e["name"], e["grade_class"], e["level"]) for e in entries)
    expected = sorted((s.name, s.class_id, s.level.value) for s in cases if s.fate in {"noticed", "objected"})
    assert shown == expected

"""Notifications: who is told what about each event (the fan-out), kept as an inbox per recipient.

Recipient scopes:
- `case:<case id>`: the applicant (student or guardian) of that case; an applicant's inbox is found by the case IDs
  derived from their resident ID number, so no ID number is stored here;
- `school:<school id>`: the school's aid office staff;
- `class:<school id>/<class id>`: the class evaluation group;
- `region:<school region code>`: education bureaus whose region covers it.

What a message may carry (DOMAIN.md's privacy rules): only what its recipient can already see, and less where
possible. Never a resident ID number or a name; never the objector or the grounds of an objection; never the
special-group category (the class is told only that a case awaits its evaluation); staff messages name the case by
its ID and class. Message texts are short Chinese sentences, their `data` the facts a client needs to link through.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.engine import Connection

from projections.bulk import RowCache, insert_rows, stored_time, upsert_rows
from projections.runner import Envelope, View

CASE_TOPICS = tuple(f"case.{name}" for name in (
    "applied", "amended", "withdrawn", "verified", "assessed", "class_evaluated", "rated", "publicized",
    "publicity_exempted", "objected", "objection_resolved", "confirmed", "archived", "follow_up_selected",
    "follow_up_recorded", "readjusted", "aid_granted", "funds_disbursed", "revoked", "funds_recovery_ordered",
    "funds_recovered"))
OTHER_TOPICS = ("round.opened", "round.closed", "support_plan.plan_created", "support_plan.reviewed")


# One inbox row, in the column order of the messages table (insert_rows): (message id, recipient kind: case | school |
# class | region, recipient key, message kind, data as JSON text, time as stored). A plain tuple: a rebuild makes one
# or two per event.
Row = tuple[int, str, str, str, str, Any]

# A message's id is its event's log position and its place among that event's messages (seq) in one integer,
# position × 8 + seq, which SQLite keeps as the row id: a fifth less to write per message than a two-column key.
SEQ_BITS = 3
SEQ_MASK = (1 << SEQ_BITS) - 1


def message_key(message_id: int) -> tuple[int, int]:
    """(log position, seq) of a message id."""
    return message_id >> SEQ_BITS, message_id & SEQ_MASK


def first_message_id(position: int) -> int:
    """The id of the first message an event at log position `position` sends (the next ones count up from it)."""
    return position << SEQ_BITS


# What each message says, by recipient kind and message kind. Read with the message (`message_title`), not stored in
# each of its millions of rows: a wording changed here holds for every message at once, as a rebuild would make it.
TITLES: dict[tuple[str, str], str] = {
    ("case", "case.applied"): "认定申请已提交，等待身份核验",
    ("school", "case.applied"): "收到新的认定申请",
    ("school", "case.amended"): "申请人修改了认定申请，需重新核验",
    ("case", "case.withdrawn"): "认定申请已撤回",
    ("school", "case.withdrawn"): "一份认定申请已撤回",
    ("case", "case.verified"): "身份核验已完成",
    ("class", "case.awaiting_evaluation"): "有认定申请等待班级民主评议",
    ("school", "case.awaiting_rating"): "班级评议已完成，等待学校认定",
    ("case", "case.rated"): "学校已作出认定",
    ("case", "case.publicized"): "认定结果进入公示期",
    ("school", "deadline.notice_window"): "公示期截止前需处理全部异议",
    ("case", "case.publicity_exempted"): "认定结果按规定免于公示",
    ("case", "case.objection_raised"): "认定结果收到异议，学校将复核",
    ("school", "case.objection_raised"): "公示期收到异议，请及时处理",
    ("case", "case.objection_resolved"): "异议已处理",
    ("case", "case.confirmed"): "认定结果已确认",
    ("school", "case.confirmed"): "公示结束，认定结果已确认",
    ("case", "case.archived"): "认定结果已建档备案",
    ("school", "deadline.follow_up"): "本学期需完成的核实抽查",
    ("case", "case.follow_up_recorded"): "学校已完成对你的认定结果的了解核实",
    ("case", "case.readjusted"): "认定结果已动态调整",
    ("case", "aid.granted"): "你获得一项资助",
    ("case", "aid.disbursed"): "资助资金已发放",
    ("case", "case.revoked"): "认定资格已取消",
    ("school", "case.revoked"): "一名学生的认定资格已取消",
    ("region", "case.revoked"): "辖区学校取消了一名学生的认定资格",
    ("case", "recovery.ordered"): "需退回已发放的资助资金",
    ("school", "recovery.ordered"): "已下达资金追回决定",
    ("case", "recovery.recorded"): "已收到退回的资助资金",
    ("school", "round.opened"): "认定工作已开启，请按时完成各环节",
    ("school", "round.closed"): "认定工作已结束",
    ("case", "plan.created"): "你的一人一案资助育人方案已制定",
    ("case", "plan.reviewed"): "你的资助育人方案已完成年度评估",
}


def message_title(recipient_kind: str, kind: str) -> str:
    return TITLES[(recipient_kind, kind)]


def _encoder() -> Callable[[Any], str]:
    """Compact JSON with non-ASCII text kept. json's C encoder made once: `json.dumps` with options (and
    JSONEncoder.encode) make a new one per call, which cost as much as the encoding of a message's few keys."""
    options = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # a Python without json's C accelerator
        return options.encode
    encode = make(None, options.default, json.encoder.encode_basestring, None, ":", ",", False, False, True)
    return lambda value: "".join(encode(value, 0))


_encode = _encoder()


class CaseContext:
    """What the fan-out needs to know about a case beyond the event in hand, with the data of a message about the
    case to its applicant ({case_id}) and to its school ({case_id, class_id}) as JSON text, encoded once per case
    and class: most messages carry just these."""

    __slots__ = ("case_id", "case_json", "class_id", "data_matched", "school_id", "school_region", "staff_json")

    def __init__(self, case_id: str, school_id: str, class_id: str, school_region: str,
                 data_matched: bool = False) -> None:
        self.case_id = case_id
        self.school_id = school_id
        self.school_region = school_region
        self.data_matched = data_matched
        self.case_json = _encode({"case_id": case_id})
        self.class_id = self.staff_json = ""
        self.move_to(class_id)

    def move_to(self, class_id: str) -> None:
        self.class_id = class_id
        self.staff_json = _encode({"case_id": self.case_id, "class_id": class_id})

    def row(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "school_id": self.school_id, "class_id": self.class_id,
                "school_region": self.school_region, "data_matched": self.data_matched}

    @classmethod
    def of_row(cls, row: dict[str, Any]) -> CaseContext:
        return cls(row["case_id"], row["school_id"], row["class_id"], row["school_region"], bool(row["data_matched"]))


def _value(value: Any) -> Any:
    return getattr(value, "value", value)


def _level(value: Any) -> str:
    return "not_identified" if value is None else str(_value(value))


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


# Case events whose messages carry only the case (to the applicant) or the case and class (to the school): per
# topic, (to the applicant?, message kind) of each message, in order.
_PLAIN: dict[str, tuple[tuple[bool, str], ...]] = {
    "case.applied": ((True, "case.applied"), (False, "case.applied")),
    "case.amended": ((False, "case.amended"),),
    "case.withdrawn": ((True, "case.withdrawn"), (False, "case.withdrawn")),
    "case.verified": ((True, "case.verified"),),
    "case.class_evaluated": ((False, "case.awaiting_rating"),),
    "case.publicity_exempted": ((True, "case.publicity_exempted"),),
    "case.confirmed": ((True, "case.confirmed"), (False, "case.confirmed")),
    "case.archived": ((True, "case.archived"),),
}


def _with(base: str, extra: dict[str, Any]) -> str:
    """The JSON text of object `base` (as `_encode` writes it) with `extra`'s keys after its own: what encoding the
    merged dict gives, without encoding the case's part again for every message."""
    return base[:-1] + "," + _encode(extra)[1:]


def _other(topic: str, event: Any, m: int, at: Any) -> list[Row]:
    """Round and plan events (first message id `m`, stored time `at`): they carry their own context."""
    if topic == "round.opened":
        data = {"round_id": str(event.originator_id), "kind": event.kind, "academic_year": event.academic_year,
                "opens_on": _iso(event.opens_on), "closes_on": _iso(event.closes_on)}
        return [(m, "school", event.school_id, "round.opened", _encode(data), at)]
    if topic == "round.closed":
        data = {"round_id": str(event.originator_id), "closed_on": _iso(event.closed_on)}
        return [(m, "school", event.school_id, "round.closed", _encode(data), at)]
    if topic == "support_plan.plan_created":
        data = {"plan_id": str(event.originator_id), "case_id": event.case_id}
        return [(m, "case", event.case_id, "plan.created", _encode(data), at)]
    if topic == "support_plan.reviewed":
        data = {"plan_id": str(event.originator_id), "case_id": event.case_id}
        return [(m, "case", event.case_id, "plan.reviewed", _encode(data), at)]
    return []


# Per case topic whose messages carry more than the case: (event, context, first message id, stored time) → its
# rows. Each builds its rows whole (a message tuple turned into a row afterwards cost a third of the fan-out).
_Builder = Callable[[Any, CaseContext, int, Any], list[Row]]


def _assessed(event: Any, ctx: CaseContext, m: int, at: Any) -> list[Row]:
    if ctx.data_matched:
        return []
    return [(m, "class", f"{ctx.school_id}/{ctx.class_id}", "case.awaiting_evaluation", ctx.staff_json, at)]


def _rated(event: Any, ctx: CaseContext, m: int, at: Any) -> list[Row]:
    return [(m, "case", ctx.case_id, "case.rated", _with(ctx.case_json, {"level": _level(event.level)}), at)]


def _publicized(event: Any, ctx: CaseContext, m: int, at: Any) -> list[Row]:
    window = {"starts_on": _iso(event.starts_on), "ends_on": _iso(event.ends_on)}
    return [(m, "case", ctx.case_id, "case.publicized", _with(ctx.case_json, window), at),
            (m + 1, "school", ctx.school_id, "deadline.notice_window", _with(ctx.staff_json, window), at)]


def _objected(event: Any, ctx: CaseContext, m: int, at: Any) -> list[Row]:
    return [(m, "case", ctx.case_id, "case.objection_raised", ctx.case_json, at),
            (m + 1, "school", ctx.school_id, "case.objection_raised",
             _with(ctx.staff_json, {"objection_id": event.objection_id}), at)]


def _objection_resolved(event: Any, ctx: CaseContext, m: int, at: Any) -> list[Row]:
    return [(m, "case", ctx.case_id, "case.objection_resolved", _with(ctx.case_json, {"outcome": event.outcome}), at)]


def _follow_up_selected(event: Any, ctx: CaseContext, m: int, at: Any) -> list[Row]:
    return [(m, "school", ctx.school_id, "deadline.follow_up",
             _with(ctx.staff_json, {"deadline": _iso(event.deadline)}), at)]


def _follow_up_recorded(event: Any, ctx: CaseContext, m: int, at: Any) -> list[Row]:
    return [(m, "case", ctx.case_id, "case.follow_up_recorded", _with(ctx.case_json, {"finding": event.finding}), at)]


def _readjusted(event: Any, ctx: CaseContext, m: int, at: Any) -> list[Row]:
    return [(m, "case", ctx.case_id, "case.readjusted", _with(ctx.case_json, {"level": _level(event.level)}), at)]


def _aid_granted(event: Any, ctx: CaseContext, m: int, at: Any) -> list[Row]:
    return [(m, "case", ctx.case_id, "aid.granted",
             _with(ctx.case_json, {"programme": event.programme, "amount": str(event.amount)}), at)]


def _funds_disbursed(event: Any, ctx: CaseContext, m: int, at: Any) -> list[Row]:
    return [(m, "case", ctx.case_id, "aid.disbursed", _with(ctx.case_json, {"amount": str(event.amount)}), at)]


def _revoked(event: Any, ctx: CaseContext, m: int, at: Any) -> list[Row]:
    return [(m, "case", ctx.case_id, "case.revoked", ctx.case_json, at),
            (m + 1, "school", ctx.school_id, "case.revoked", ctx.staff_json, at),
            (m + 2, "region", ctx.school_region, "case.revoked", _with(ctx.case_json, {"school_id": ctx.school_id}),
             at)]


def _recovery_ordered(event: Any, ctx: CaseContext, m: int, at: Any) -> list[Row]:
    amount = {"amount": str(event.amount)}
    return [(m, "case", ctx.case_id, "recovery.ordered", _with(ctx.case_json, amount), at),
            (m + 1, "school", ctx.school_id, "recovery.ordered", _with(ctx.staff_json, amount), at)]


def _recovered(event: Any, ctx: CaseContext, m: int, at: Any) -> list[Row]:
    return [(m, "case", ctx.case_id, "recovery.recorded", _with(ctx.case_json, {"amount": str(event.amount)}), at)]


_BUILDERS: dict[str, _Builder] = {
    "case.assessed": _assessed, "case.rated": _rated, "case.publicized": _publicized, "case.objected": _objected,
    "case.objection_resolved": _objection_resolved, "case.follow_up_selected": _follow_up_selected,
    "case.follow_up_recorded": _follow_up_recorded, "case.readjusted": _readjusted, "case.aid_granted": _aid_granted,
    "case.funds_disbursed": _funds_disbursed, "case.revoked": _revoked,
    "case.funds_recovery_ordered": _recovery_ordered, "case.funds_recovered": _recovered,
}


class Notifications(View):
    name: ClassVar[str] = "notifications"
    # 2: `data` is JSON text written by the view (so rows go in by COPY / C executemany; read with message_data).
    # 3: on SQLite a WITHOUT ROWID table.
    # 4: keyed by one integer (position × 8 + seq: SQLite's row id), titles read with the message, not stored.
    schema_version: ClassVar[int] = 4
    topics: ClassVar[tuple[str, ...]] = CASE_TOPICS + OTHER_TOPICS
    # Messages made from the case's context alone (_PLAIN, and the _assessed and _revoked builders).
    lean_topics: ClassVar[frozenset[str]] = frozenset({
        "case.withdrawn", "case.class_evaluated", "case.publicity_exempted", "case.confirmed", "case.archived",
        "case.assessed", "case.revoked"})

    def __init__(self) -> None:
        # The cases' contexts kept between batches (a case's events come days apart, between other cases'): at
        # 200,000 cases, reading them back cost 3.6 s of a 49 s rebuild (bench/README (a)).
        self.cache: RowCache[CaseContext] = RowCache(load=CaseContext.of_row)

    def define_tables(self, md: MetaData, suffix: str) -> dict[str, Table]:
        cases = Table(
            f"notification_cases{suffix}", md,
            Column("case_id", String(36), primary_key=True),
            Column("school_id", String(32), nullable=False),
            Column("class_id", String(64), nullable=False),
            Column("school_region", String(6), nullable=False),
            Column("data_matched", Boolean, nullable=False),
        )
        messages = Table(
            f"notifications{suffix}", md,
            # position × 8 + seq (first_message_id, message_key). INTEGER on SQLite, where it is the row id.
            Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
            Column("recipient_kind", String(8), nullable=False),
            Column("recipient_key", String(100), nullable=False),
            Column("kind", String(48), nullable=False),
            Column("data", Text, nullable=False),
            Column("occurred_at", DateTime(timezone=True), nullable=False),
        )
        Index(f"ix_notifications{suffix}_inbox", messages.c.recipient_kind, messages.c.recipient_key, messages.c.id)
        return {"cases": cases, "messages": messages}

    def handle(self, conn: Connection, tables: dict[str, Table], batch: Sequence[Envelope]) -> None:
        cases = tables["cases"]
        ids = {e.case_key for e in batch if e.topic.startswith("case.")}
        known = self.cache.rows(conn, cases, "case_id", ids)
        existing = set(known)
        touched: set[str] = set()
        rows: list[Row] = []
        time_of = stored_time(conn, tables["messages"], "occurred_at")
        plain_of, build_of = _PLAIN.get, _BUILDERS.get
        for envelope in batch:
            topic = envelope.topic
            if not topic.startswith("case."):
                rows += _other(topic, envelope.event, first_message_id(envelope.position), time_of(envelope))
                continue
            key = envelope.case_key
            ctx = known.get(key)
            if topic == "case.applied":
                student = envelope.event.form["student"]
                ctx = known[key] = CaseContext(key, student["school_id"], student["class_id"],
                                               envelope.event.school_region)
                touched.add(key)
            elif ctx is None:
                continue  # a case whose application is not in the log: it sends nothing
            elif topic == "case.amended":
                class_id = envelope.event.form["student"]["class_id"]
                if (ctx.class_id, ctx.data_matched) != (class_id, False):  # a row is written only when it changes
                    ctx.move_to(class_id)
                    ctx.data_matched = False
                    touched.add(key)
            elif topic == "case.verified":
                matched = envelope.event.method == "data_match" and bool(envelope.event.confirmed)
                if ctx.data_matched != matched:
                    ctx.data_matched = matched
                    touched.add(key)
            plain = plain_of(topic)
            if plain is not None:
                m, at = first_message_id(envelope.position), time_of(envelope)
                rows += [(m + seq, "case", ctx.case_id, kind, ctx.case_json, at) if applicant
                         else (m + seq, "school", ctx.school_id, kind, ctx.staff_json, at)
                         for seq, (applicant, kind) in enumerate(plain)]
            elif (build := build_of(topic)) is not None:
                rows += build(envelope.event, ctx, first_message_id(envelope.position), time_of(envelope))
        upsert_rows(conn, cases, "case_id", [known[k].row() for k in touched if k not in existing],
                    [known[k].row() for k in touched if k in existing])
        insert_rows(conn, tables["messages"], rows, stored=True)
        self.cache.keep(cases, known)


def message_data(stored: Any) -> dict[str, Any]:
    """A message's data as stored by the view (JSON text)."""
    data: dict[str, Any] = json.loads(stored) if isinstance(stored, str | bytes) else dict(stored)
    return data

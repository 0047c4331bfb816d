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
from dataclasses import dataclass, field
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

from projections.bulk import RowCache, insert_rows, stored_form, upsert_rows
from projections.runner import Envelope, View

CASE_TOPICS = tuple(f"case.{name}" for name in (
    "applied", "amended", "withdrawn", "verified", "assessed", "class_evaluated", "rated", "publicized",
    "publicity_exempted", "objected", "objection_resolved", "confirmed", "archived", "follow_up_selected",
    "follow_up_recorded", "readjusted", "aid_granted", "funds_disbursed", "revoked", "funds_recovery_ordered",
    "funds_recovered"))
OTHER_TOPICS = ("round.opened", "round.closed", "support_plan.plan_created", "support_plan.reviewed")


# One message to one recipient: (recipient kind: case | school | class | region, recipient key, message kind, title,
# data as JSON text). A plain tuple, as a rebuild makes one or two per event.
Message = tuple[str, str, str, str, str]


# A message before its data is encoded.
Draft = tuple[str, str, str, str, dict[str, Any]]


def _encoded(drafts: list[Draft]) -> list[Message]:
    return [(kind, key, message_kind, title, _encode(data)) for kind, key, message_kind, title, data in drafts]


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


@dataclass(slots=True)
class CaseContext:
    """What the fan-out needs to know about a case beyond the event in hand."""

    case_id: str
    school_id: str
    class_id: str
    school_region: str
    data_matched: bool = False
    _json: tuple[str, str, str] | None = field(default=None, repr=False, compare=False)

    def data_json(self) -> tuple[str, str]:
        """The data of a message about the case to its applicant ({case_id}) and to its school ({case_id,
        class_id}) as JSON text, encoded once per case and class (most messages carry just these)."""
        if self._json is None or self._json[0] != self.class_id:
            self._json = (self.class_id, _encode({"case_id": self.case_id}),
                          _encode({"case_id": self.case_id, "class_id": self.class_id}))
        return self._json[1], self._json[2]

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


# Events whose messages carry only the case (to the applicant) or the case and class (to the school): per event kind,
# (to the applicant?, message kind, title) of each message, in order.
_PLAIN: dict[str, tuple[tuple[bool, str, str], ...]] = {
    "Applied": ((True, "case.applied", "认定申请已提交，等待身份核验"), (False, "case.applied", "收到新的认定申请")),
    "Amended": ((False, "case.amended", "申请人修改了认定申请，需重新核验"),),
    "Withdrawn": ((True, "case.withdrawn", "认定申请已撤回"), (False, "case.withdrawn", "一份认定申请已撤回")),
    "Verified": ((True, "case.verified", "身份核验已完成"),),
    "ClassEvaluated": ((False, "case.awaiting_rating", "班级评议已完成，等待学校认定"),),
    "PublicityExempted": ((True, "case.publicity_exempted", "认定结果按规定免于公示"),),
    "Confirmed": ((True, "case.confirmed", "认定结果已确认"), (False, "case.confirmed", "公示结束，认定结果已确认")),
    "Archived": ((True, "case.archived", "认定结果已建档备案"),),
}


def _with(base: str, extra: dict[str, Any]) -> str:
    """The JSON text of object `base` (as `_encode` writes it) with `extra`'s keys after its own: what encoding the
    merged dict gives, without encoding the case's part again for every message."""
    return base[:-1] + "," + _encode(extra)[1:]


def _other(kind: str, event: Any) -> list[Message]:
    """Round and plan events: they carry their own context."""
    if kind == "RoundOpened":
        data = {"round_id": str(event.originator_id), "kind": event.kind, "academic_year": event.academic_year,
                "opens_on": _iso(event.opens_on), "closes_on": _iso(event.closes_on)}
        return _encoded([("school", event.school_id, "round.opened", "认定工作已开启，请按时完成各环节", data)])
    if kind == "RoundClosed":
        return _encoded([("school", event.school_id, "round.closed", "认定工作已结束",
                          {"round_id": str(event.originator_id), "closed_on": _iso(event.closed_on)})])
    if kind == "PlanCreated":
        return _encoded([("case", event.case_id, "plan.created", "你的一人一案资助育人方案已制定",
                          {"plan_id": str(event.originator_id), "case_id": event.case_id})])
    if kind == "PlanReviewed":
        return _encoded([("case", event.case_id, "plan.reviewed", "你的资助育人方案已完成年度评估",
                          {"plan_id": str(event.originator_id), "case_id": event.case_id})])
    return []


# Per case event kind that carries more than the case: (event, context, the case's data, the staff's data) → its
# messages, data encoded.
_Builder = Callable[[Any, CaseContext, str, str], list[Message]]


def _assessed(event: Any, ctx: CaseContext, case: str, staff: str) -> list[Message]:
    if ctx.data_matched:
        return []
    return [("class", f"{ctx.school_id}/{ctx.class_id}", "case.awaiting_evaluation", "有认定申请等待班级民主评议",
             staff)]


def _rated(event: Any, ctx: CaseContext, case: str, staff: str) -> list[Message]:
    return [("case", ctx.case_id, "case.rated", "学校已作出认定", _with(case, {"level": _level(event.level)}))]


def _publicized(event: Any, ctx: CaseContext, case: str, staff: str) -> list[Message]:
    window = {"starts_on": _iso(event.starts_on), "ends_on": _iso(event.ends_on)}
    return [("case", ctx.case_id, "case.publicized", "认定结果进入公示期", _with(case, window)),
            ("school", ctx.school_id, "deadline.notice_window", "公示期截止前需处理全部异议", _with(staff, window))]


def _objected(event: Any, ctx: CaseContext, case: str, staff: str) -> list[Message]:
    return [("case", ctx.case_id, "case.objection_raised", "认定结果收到异议，学校将复核", case),
            ("school", ctx.school_id, "case.objection_raised", "公示期收到异议，请及时处理",
             _with(staff, {"objection_id": event.objection_id}))]


def _objection_resolved(event: Any, ctx: CaseContext, case: str, staff: str) -> list[Message]:
    return [("case", ctx.case_id, "case.objection_resolved", "异议已处理", _with(case, {"outcome": event.outcome}))]


def _follow_up_selected(event: Any, ctx: CaseContext, case: str, staff: str) -> list[Message]:
    return [("school", ctx.school_id, "deadline.follow_up", "本学期需完成的核实抽查",
             _with(staff, {"deadline": _iso(event.deadline)}))]


def _follow_up_recorded(event: Any, ctx: CaseContext, case: str, staff: str) -> list[Message]:
    return [("case", ctx.case_id, "case.follow_up_recorded", "学校已完成对你的认定结果的了解核实",
             _with(case, {"finding": event.finding}))]


def _readjusted(event: Any, ctx: CaseContext, case: str, staff: str) -> list[Message]:
    return [("case", ctx.case_id, "case.readjusted", "认定结果已动态调整", _with(case, {"level": _level(event.level)}))]


def _aid_granted(event: Any, ctx: CaseContext, case: str, staff: str) -> list[Message]:
    return [("case", ctx.case_id, "aid.granted", "你获得一项资助",
             _with(case, {"programme": event.programme, "amount": str(event.amount)}))]


def _funds_disbursed(event: Any, ctx: CaseContext, case: str, staff: str) -> list[Message]:
    return [("case", ctx.case_id, "aid.disbursed", "资助资金已发放", _with(case, {"amount": str(event.amount)}))]


def _revoked(event: Any, ctx: CaseContext, case: str, staff: str) -> list[Message]:
    return [("case", ctx.case_id, "case.revoked", "认定资格已取消", case),
            ("school", ctx.school_id, "case.revoked", "一名学生的认定资格已取消", staff),
            ("region", ctx.school_region, "case.revoked", "辖区学校取消了一名学生的认定资格",
             _with(case, {"school_id": ctx.school_id}))]


def _recovery_ordered(event: Any, ctx: CaseContext, case: str, staff: str) -> list[Message]:
    amount = {"amount": str(event.amount)}
    return [("case", ctx.case_id, "recovery.ordered", "需退回已发放的资助资金", _with(case, amount)),
            ("school", ctx.school_id, "recovery.ordered", "已下达资金追回决定", _with(staff, amount))]


def _recovered(event: Any, ctx: CaseContext, case: str, staff: str) -> list[Message]:
    return [("case", ctx.case_id, "recovery.recorded", "已收到退回的资助资金",
             _with(case, {"amount": str(event.amount)}))]


_BUILDERS: dict[str, _Builder] = {
    "Assessed": _assessed, "Rated": _rated, "Publicized": _publicized, "Objected": _objected,
    "ObjectionResolved": _objection_resolved, "FollowUpSelected": _follow_up_selected,
    "FollowUpRecorded": _follow_up_recorded, "Readjusted": _readjusted, "AidGranted": _aid_granted,
    "FundsDisbursed": _funds_disbursed, "Revoked": _revoked, "FundsRecoveryOrdered": _recovery_ordered,
    "FundsRecovered": _recovered,
}


def fan_out(kind: str, event: Any, ctx: CaseContext | None) -> list[Message]:
    """The messages one event sends, per recipient. Round and plan events carry their own context; a case event
    whose case this view does not know (its application is not in the log) sends none."""
    if ctx is None:
        return _other(kind, event)
    case_json, staff_json = ctx.data_json()
    plain = _PLAIN.get(kind)
    if plain is not None:
        return [("case", ctx.case_id, k, title, case_json) if applicant
                else ("school", ctx.school_id, k, title, staff_json) for applicant, k, title in plain]
    build = _BUILDERS.get(kind)
    return [] if build is None else build(event, ctx, case_json, staff_json)


class Notifications(View):
    name: ClassVar[str] = "notifications"
    # 2: `data` is JSON text written by the view (so rows go in by COPY / C executemany; read with message_data).
    # 3: on SQLite a WITHOUT ROWID table.
    schema_version: ClassVar[int] = 3
    topics: ClassVar[tuple[str, ...]] = CASE_TOPICS + OTHER_TOPICS
    # Messages made from the case's context alone (_PLAIN, and Assessed and Revoked in fan_out).
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
            Column("position", BigInteger, primary_key=True),
            Column("seq", Integer, primary_key=True),
            Column("recipient_kind", String(8), nullable=False),
            Column("recipient_key", String(100), nullable=False),
            Column("kind", String(48), nullable=False),
            Column("title", String(200), nullable=False),
            Column("data", Text, nullable=False),
            Column("occurred_at", DateTime(timezone=True), nullable=False),
            # SQLite: the rows live in their primary key's B-tree (one tree written per row, not a rowid table and
            # a key index beside it).
            sqlite_with_rowid=False,
        )
        Index(f"ix_notifications{suffix}_inbox", messages.c.recipient_kind, messages.c.recipient_key,
              messages.c.position)
        return {"cases": cases, "messages": messages}

    def handle(self, conn: Connection, tables: dict[str, Table], batch: Sequence[Envelope]) -> None:
        cases = tables["cases"]
        ids = {e.case_key for e in batch if e.topic.startswith("case.")}
        known = self.cache.rows(conn, cases, "case_id", ids)
        existing = set(known)
        touched: set[str] = set()
        rows: list[tuple[Any, ...]] = []
        stored_time = stored_form(conn, tables["messages"], "occurred_at")
        for envelope in batch:
            event = envelope.event
            kind = type(event).__name__
            ctx = None
            if envelope.topic.startswith("case."):
                key = envelope.case_key
                if kind == "Applied":
                    student = event.form["student"]
                    known[key] = CaseContext(key, student["school_id"], student["class_id"], event.school_region)
                    touched.add(key)
                elif kind == "Amended" and key in known:
                    ctx = known[key]
                    class_id = event.form["student"]["class_id"]
                    if (ctx.class_id, ctx.data_matched) != (class_id, False):
                        ctx.class_id, ctx.data_matched = class_id, False
                        touched.add(key)
                elif kind == "Verified" and key in known:
                    ctx = known[key]
                    matched = event.method == "data_match" and bool(event.confirmed)
                    if ctx.data_matched != matched:  # a row is written only when it changes
                        ctx.data_matched = matched
                        touched.add(key)
                ctx = known.get(key)
            messages = fan_out(kind, event, ctx)
            if messages:
                at = stored_time(envelope.occurred_at)
                position = envelope.position
                # In the column order of the messages table (insert_rows).
                rows += [(position, seq, *message, at) for seq, message in enumerate(messages)]
        upsert_rows(conn, cases, "case_id", [known[k].row() for k in touched if k not in existing],
                    [known[k].row() for k in touched if k in existing])
        insert_rows(conn, tables["messages"], rows, stored=True)
        self.cache.keep(cases, known)


def message_data(stored: Any) -> dict[str, Any]:
    """A message's data as stored by the view (JSON text)."""
    data: dict[str, Any] = json.loads(stored) if isinstance(stored, str | bytes) else dict(stored)
    return data

"""Audit: what changed between two versions of a case, a case's dossier (JSON or a printable HTML page), the
log's integrity (verify, seals), and the access log of unmasked readings.

Who: the diff and the log endpoints are for discipline auditors only. The dossier is for auditors and for the
case's own school (it files the case, 建档备案, and sees its cases in full anyway); other schools get 404 as for
any case outside their scope. Personal data is masked for auditors unless they state a `reason`, which is then
recorded in the access log (api/masking.py).
"""

from __future__ import annotations

import html
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, JSONResponse

from adapters.access_log import AccessLog
from adapters.integrity import LogIntegrity, verify_store
from adapters.replay import check_range, diff, history
from api.deps import PrincipalDep, ServicesDep
from api.masking import DisclosureDep, mask
from api.schemas import case_state, plain
from domain.case import case_uuid
from domain.errors import DomainError
from domain.values import Role

router = APIRouter(prefix="/v1", tags=["audit"])

EVENT_LABELS = {
    "Applied": "提交申请", "Amended": "修改申请", "Withdrawn": "撤回申请", "Verified": "身份核验",
    "Assessed": "定量评价", "ClassEvaluated": "民主评议", "Rated": "学校认定", "Publicized": "结果公示",
    "PublicityExempted": "免于公示", "Objected": "提出异议", "ObjectionResolved": "异议处理", "Confirmed": "认定确认",
    "Archived": "建档备案", "FollowUpSelected": "抽查选定", "FollowUpRecorded": "抽查记录", "HomeVisited": "家访",
    "Readjusted": "动态调整", "AidGranted": "资助发放决定", "FundsDisbursed": "资金发放", "Revoked": "撤销资格",
    "FundsRecoveryOrdered": "责令追回", "FundsRecovered": "资金追回", "IntegrityViolationRecorded": "诚信记录",
}
ROLE_LABELS = {"applicant": "申请人", "evaluator": "评议小组", "school": "学校资助管理机构", "bureau": "教育局",
               "auditor": "纪检/审计", "system": "系统"}


@router.get("/cases/{case_id}/diff")
def case_diff(case_id: str, principal: PrincipalDep, services: ServicesDep, disclosure: DisclosureDep,
              start: Annotated[int, Query(alias="from", ge=1, le=1_000_000)],
              end: Annotated[int, Query(alias="to", ge=1, le=1_000_000)]) -> JSONResponse:
    """What changed in the case's state from version `from` to version `to`, and the events in between."""
    uid = case_uuid(case_id)
    current = services.cases.get(principal, uid)
    check_range(start, end, current.version)
    before = case_state(services.cases.get(principal, uid, version=start))
    after = case_state(services.cases.get(principal, uid, version=end))
    steps = [s for s in services.cases.events(principal, uid) if start < s.version <= end]
    view = disclosure.view
    disclosure.record(case_id=str(uid))
    return JSONResponse({
        "id": str(uid), "from": start, "to": end,
        "events": mask([plain({"version": s.version, "type": s.type, "occurred_at": s.occurred_at,
                               "actor": s.actor, "data": s.data}) for s in steps], view),
        # Masked before comparing: a change's before/after values carry no key the mask could catch.
        "changes": diff(mask(before, view), mask(after, view)),
    })


@router.get("/cases/{case_id}/dossier", response_model=None)
def dossier(case_id: str, principal: PrincipalDep, services: ServicesDep, disclosure: DisclosureDep,
            format: Annotated[Literal["json", "html"], Query()] = "json") -> JSONResponse | HTMLResponse:
    """The case's whole file: every event with who and when, the state after each, and the chain check."""
    uid = case_uuid(case_id)
    damages = LogIntegrity(services.store.recorder).verify_case(uid)
    try:
        services.cases.get(principal, uid)  # scope first: a case outside it is 404 before anything is read
    except DomainError:
        raise
    except Exception:
        # A damaged case may not even load; an auditor (whose scope is everything) still gets its dossier.
        if not (damages and principal.role is Role.AUDITOR):
            raise
    steps: list[dict[str, Any]] = []
    replay_error = None
    try:
        for step in history(services.cases, uid, case_state):
            steps.append({"version": step.event.version, "type": step.event.type,
                          "occurred_at": step.event.occurred_at, "actor": step.event.actor,
                          "data": step.event.data, "state_after": step.state})
    except Exception as exc:
        if not damages:
            raise
        # Damaged bytes can fail anywhere in decoding or replay: the dossier still shows what was readable.
        replay_error = f"replay stopped after version {len(steps)}: {type(exc).__name__}"
    body = disclosure.apply(plain({
        "id": str(uid),
        "generated_at": services.clock.now(),
        "generated_by": {"sub": principal.sub, "role": principal.role.value},
        "view": disclosure.view.value,
        "integrity": {"intact": not damages, "damages": [d.as_dict() for d in damages],
                      "replay_error": replay_error},
        "events": steps,
        "current": steps[-1]["state_after"] if steps else None,
    }), case_id=str(uid))
    if format == "html":
        return HTMLResponse(render_dossier(body), headers={
            # The printable page carries its own inline style and nothing else.
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            "Content-Disposition": f'inline; filename="dossier-{uid}.html"'})
    return JSONResponse(body, headers={"Content-Disposition": f'inline; filename="dossier-{uid}.json"'})


@router.get("/audit/verify-log")
def verify_log(services: ServicesDep) -> JSONResponse:
    """Checks every case's stored events against the hash chain and the seals, and the snapshots against the
    events (as `zizhu verify-log`)."""
    return JSONResponse(verify_store(services.store).as_dict())


@router.get("/audit/seals")
def seals(services: ServicesDep) -> JSONResponse:
    """Every seal, oldest first: keep this export outside the system and check it with
    `zizhu verify-log --seals FILE`."""
    return JSONResponse([s.as_dict() for s in LogIntegrity(services.store.recorder).seals()])


@router.post("/audit/seals")
def seal_now(services: ServicesDep) -> JSONResponse:
    """Seals the chain heads that moved since the last seal; `created` is false when nothing moved."""
    seal = LogIntegrity(services.store.recorder).seal(services.clock.now().isoformat())
    return JSONResponse({"created": seal is not None, "seal": seal.as_dict() if seal else None})


@router.get("/audit/access-log")
def access_log(services: ServicesDep, case_id: str | None = None, sub: Annotated[str | None, Query(
                   max_length=200)] = None, after: Annotated[int, Query(ge=0)] = 0,
               limit: Annotated[int, Query(ge=1, le=500)] = 100) -> JSONResponse:
    """Unmasked readings of personal data (who, which case, what, when, why), oldest first; page on with
    `after` = the last `entry_id` seen."""
    case = str(case_uuid(case_id)) if case_id else None
    entries = AccessLog(services.engine).entries(case_id=case, sub=sub, after=after, limit=limit)
    return JSONResponse({"items": [e.as_dict() for e in entries],
                         "next_after": entries[-1].entry_id if len(entries) == limit else None})


# ------------------------------------------------------------------------------------------------ HTML


def _value(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return f"<pre>{html.escape(json.dumps(value, ensure_ascii=False, indent=1))}</pre>"
    return html.escape("" if value is None else str(value))


def _table(rows: list[tuple[str, Any]]) -> str:
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{_value(v)}</td></tr>" for k, v in rows)
    return f"<table class='kv'>{cells}</table>"


def render_dossier(body: dict[str, Any]) -> str:
    """A printable page: header, integrity, then each event (who, when, what) and the fields it changed."""
    events = body["events"]
    parts = []
    previous: dict[str, Any] = {}
    for step in events:
        actor = step.get("actor") or {}
        changes = diff(previous, step["state_after"])
        previous = step["state_after"]
        changed = "".join(
            f"<tr><td>{html.escape(c['path'])}</td><td>{_value(c['before'])}</td><td>{_value(c['after'])}</td></tr>"
            for c in changes if c["path"] not in {"version", "modified_at"})
        parts.append(
            f"<section class='event'><h3>版本 {step['version']} · {html.escape(EVENT_LABELS.get(step['type'], ''))}"
            f" <small>{html.escape(step['type'])}</small></h3>"
            + _table([("时间 Time", step["occurred_at"]),
                      ("操作人 Actor", f"{actor.get('sub', '')} ({ROLE_LABELS.get(actor.get('role', ''), '')})"),
                      ("内容 Data", step["data"])])
            + ("<h4>状态变化 Changes</h4><table class='diff'><tr><th>字段 Field</th><th>之前 Before</th>"
               f"<th>之后 After</th></tr>{changed}</table>" if changed else "")
            + "</section>")
    integrity = body["integrity"]
    verdict = "完整 intact: the stored events match the hash chain and the seals" if integrity["intact"] else \
        "已被篡改 DAMAGED: " + "; ".join(f"version {d['version']} {d['kind']}" for d in integrity["damages"]) \
        + (f" ({integrity['replay_error']})" if integrity.get("replay_error") else "")
    current = body.get("current") or {}
    title = f"家庭经济困难学生认定案卷 Dossier {body['id']}"
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: "Noto Sans CJK SC", "Source Han Sans SC", "Microsoft YaHei", sans-serif; margin: 2em;
       font-size: 11pt; color: #111; }}
h1 {{ font-size: 16pt; }} h3 {{ margin: 0.2em 0; font-size: 12pt; }} small {{ color: #666; }}
table {{ border-collapse: collapse; width: 100%; margin: 0.4em 0; }}
th, td {{ border: 1px solid #bbb; padding: 3px 6px; text-align: left; vertical-align: top; }}
table.kv th {{ width: 12em; background: #f3f3f3; }} table.diff th {{ background: #f3f3f3; }}
pre {{ margin: 0; white-space: pre-wrap; font-size: 9pt; }}
section.event {{ border-top: 2px solid #333; padding-top: 0.5em; margin-top: 1em; page-break-inside: avoid; }}
.verdict {{ font-weight: bold; }}
@media print {{ body {{ margin: 0; }} }}
</style></head><body>
<h1>{html.escape(title)}</h1>
{_table([("案件 Case", body["id"]), ("状态 Status", current.get("status")), ("认定等级 Level", current.get("level")),
         ("学年 Academic year", current.get("academic_year")), ("学校 School", current.get("school_id")),
         ("生成时间 Generated at", body["generated_at"]),
         ("生成人 Generated by", f"{body['generated_by']['sub']} ({body['generated_by']['role']})"),
         ("视图 View", body["view"]), ("事件数 Events", len(events))])}
<p class="verdict">日志完整性 Log integrity: {html.escape(verdict)}</p>
{"".join(parts)}
</body></html>
"""


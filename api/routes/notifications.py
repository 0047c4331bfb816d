"""The caller's inbox (`GET /v1/notifications`): what concerns them, newest first, from the notifications view.

Applicants see their own cases' messages, school staff their school's, a class evaluation group its class's, a
bureau the region-wide ones; auditors have no inbox. `X-Min-Position` waits for the view like every other query.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse

from adapters.notifications import VIEW, Inbox
from api.deps import PrincipalDep, ServicesDep
from api.errors import problem
from api.schemas import plain
from domain.errors import ValidationFailed

router = APIRouter(tags=["notifications"])

READ_YOUR_WRITES_WAIT = 5.0


@router.get("/v1/notifications")
def inbox(principal: PrincipalDep, services: ServicesDep,
          before: Annotated[str | None, Query(description="the next_cursor of the previous page")] = None,
          kind: Annotated[str | None, Query(max_length=48)] = None,
          limit: Annotated[int, Query()] = 50,
          min_position: Annotated[str | None, Header(alias="X-Min-Position")] = None) -> JSONResponse:
    if min_position is not None:
        if not min_position.strip().isdigit():
            raise ValidationFailed("X-Min-Position is the log position a command returned", field="X-Min-Position")
        if not services.projections.wait_for(VIEW, int(min_position), timeout=READ_YOUR_WRITES_WAIT):
            return problem(503, "stale_view", f"the {VIEW} view has not yet reached position {min_position}; "
                           "retry shortly", headers={"Retry-After": "1"}, view=VIEW)
    page = Inbox(services.projections, services.clock).page(principal, before=before, limit=limit, kind=kind)
    return JSONResponse(plain({"items": page.items, "next_cursor": page.next_cursor}),
                        headers={"X-View-Position": str(services.projections.position(VIEW))})

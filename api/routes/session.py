"""`GET /v1/me`: who the bearer token says the caller is (role and scope), for the web console's navigation.

The pages could read a local token's claims themselves, but a token from the deployment's identity provider names
its claims its own way (ZIZHU_OIDC_*_CLAIM, role map): only the service knows how they map, so it answers here.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import PrincipalDep

router = APIRouter(prefix="/v1", tags=["session"])


@router.get("/me")
def me(principal: PrincipalDep) -> JSONResponse:
    """The caller's role and scope claims; an applicant's own student ID number is theirs to see."""
    return JSONResponse({"sub": principal.sub, "role": principal.role.value, "school": principal.school,
                         "class_id": principal.class_id, "region": principal.region,
                         "student": principal.student})

"""Bearer tokens (HS256 with ZIZHU_SECRET) and the scope rules of DOMAIN.md's actor table."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt

from domain.case import StudentCase
from domain.errors import CaseNotFound, Forbidden
from domain.values import Actor, Role

ISSUER = "zizhu"


class InvalidToken(Exception):
    pass


@dataclass(frozen=True)
class Principal:
    sub: str
    role: Role
    school: str | None = None
    class_id: str | None = None
    region: str | None = None
    student: str | None = None

    @property
    def actor(self) -> Actor:
        return Actor(self.sub, self.role)

    @property
    def region_prefix(self) -> str:
        """450000 covers the province (45), 450100 the city (4501), 450103 the county."""
        code = self.region or ""
        while code.endswith("00") and len(code) > 2:
            code = code[:-2]
        return code


def issue_token(secret: str, *, sub: str, role: str, school: str | None = None, class_id: str | None = None,
                region: str | None = None, student: str | None = None, ttl: int = 3600,
                now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {"sub": sub, "role": Role(role).value, "iss": ISSUER, "iat": issued,
                              "exp": issued + ttl}
    for key, value in (("school", school), ("class", class_id), ("region", region), ("student", student)):
        if value:
            claims[key] = value
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_token(secret: str, token: str) -> Principal:
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], issuer=ISSUER,
                            options={"require": ["sub", "exp", "iss"]})
        role = Role(claims.get("role"))
    except (jwt.PyJWTError, ValueError) as exc:
        raise InvalidToken(str(exc)) from None
    if role is Role.SYSTEM:
        raise InvalidToken("the system role cannot sign in")
    principal = Principal(sub=str(claims["sub"]), role=role, school=claims.get("school"),
                          class_id=claims.get("class"), region=claims.get("region"), student=claims.get("student"))
    return check_scope(principal)


def check_scope(principal: Principal) -> Principal:
    """A token of a scoped role must carry its scope claim (shared with external tokens, adapters/jwks.py)."""
    role = principal.role
    missing = {Role.APPLICANT: principal.student, Role.EVALUATOR: principal.school and principal.class_id,
               Role.SCHOOL: principal.school, Role.BUREAU: principal.region}.get(role, "ok")
    if not missing:
        raise InvalidToken(f"a {role.value} token must carry its scope claim")
    return principal


# Which roles may issue which commands on a case they can see.
COMMAND_ROLES: dict[str, frozenset[Role]] = {
    "amend": frozenset({Role.APPLICANT}),
    "withdraw": frozenset({Role.APPLICANT, Role.SCHOOL}),
    "verify": frozenset({Role.SCHOOL}),
    "assess": frozenset({Role.SCHOOL}),
    "evaluate": frozenset({Role.EVALUATOR}),
    "cast_vote": frozenset({Role.EVALUATOR}),
    "rate": frozenset({Role.SCHOOL}),
    "publicize": frozenset({Role.SCHOOL}),
    "exempt_publicity": frozenset({Role.SCHOOL}),
    "object": frozenset({Role.APPLICANT, Role.EVALUATOR, Role.SCHOOL}),
    "resolve_objection": frozenset({Role.SCHOOL}),
    "confirm": frozenset({Role.SYSTEM, Role.SCHOOL}),
    "archive": frozenset({Role.SCHOOL, Role.BUREAU, Role.SYSTEM}),
    "follow_up": frozenset({Role.SCHOOL}),
    "select_follow_up": frozenset({Role.SCHOOL, Role.SYSTEM}),
    "home_visit": frozenset({Role.SCHOOL}),
    "readjust": frozenset({Role.SCHOOL}),
    "grant_aid": frozenset({Role.SCHOOL}),
    "disburse": frozenset({Role.SCHOOL}),
    "revoke": frozenset({Role.SCHOOL}),
    "order_recovery": frozenset({Role.SCHOOL}),
    "record_recovery": frozenset({Role.SCHOOL}),
    "record_integrity_violation": frozenset({Role.SCHOOL, Role.BUREAU}),
}


def in_scope(principal: Principal, case: StudentCase) -> bool:
    role = principal.role
    if role in {Role.AUDITOR, Role.SYSTEM}:
        return True
    if role is Role.APPLICANT:
        return principal.student == case.applicant_id_number
    if role is Role.EVALUATOR:
        return principal.school == case.school_id and principal.class_id == case.class_id
    if role is Role.SCHOOL:
        return principal.school == case.school_id
    if role is Role.BUREAU:
        return bool(principal.region_prefix) and case.school_region.startswith(principal.region_prefix)
    return False


def require_read(principal: Principal, case: StudentCase) -> None:
    if not in_scope(principal, case):
        raise CaseNotFound("no such case")


def require_command(principal: Principal, case: StudentCase, command: str) -> None:
    require_read(principal, case)
    if principal.role not in COMMAND_ROLES[command]:
        raise Forbidden(f"the {principal.role.value} role cannot {command.replace('_', ' ')}")

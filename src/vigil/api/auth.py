"""Bearer tokens scoped to one space with a role. Every space endpoint depends on ``need(role)``:
the token must be live, belong to the space in the path, and carry at least the role."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request

from vigil.api.errors import ApiError
from vigil.model import ApiToken, Role

SPACE_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,80}$"
SpacePath = Annotated[str, Path(pattern=SPACE_PATTERN, description="The Agent Space (security boundary).")]
IdPath = Annotated[str, Path(pattern=ID_PATTERN)]
CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Principal:
    token: ApiToken

    @property
    def space(self) -> str:
        return self.token.space_id

    @property
    def actor(self) -> str:
        return f"token:{self.token.id}" + (f" ({self.token.name})" if self.token.name else "")


def bearer(request: Request) -> str | None:
    scheme, _, cred = request.headers.get("authorization", "").partition(" ")
    cred = cred.strip()
    return cred if scheme.lower() == "bearer" and cred else None


def authenticate(request: Request) -> ApiToken:
    secret = bearer(request)
    if secret is None:
        raise ApiError(401, "missing bearer token: send 'Authorization: Bearer <token>'", CHALLENGE)
    tok = request.app.state.runtime.tokens.resolve(secret)
    if tok is None:
        raise ApiError(401, "invalid or revoked token", CHALLENGE)
    return tok


def authorize(tok: ApiToken, space: str, role: Role) -> Principal:
    if tok.space_id != space:
        raise ApiError(403, f"this token is not valid for space {space!r}")
    if not tok.role.allows(role):
        raise ApiError(403, f"this needs the {role.value} role; the token has {tok.role.value}")
    return Principal(tok)


def need(role: Role):
    """Dependency for endpoints under /v1/spaces/{space}/..."""

    def dep(request: Request, space: SpacePath) -> Principal:
        return authorize(authenticate(request), space, role)

    return Depends(dep)


def need_own_space(role: Role):
    """Dependency for endpoints whose space is the token's own (OTLP, the space list)."""

    def dep(request: Request) -> Principal:
        tok = authenticate(request)
        return authorize(tok, tok.space_id, role)

    return Depends(dep)


Viewer = Annotated[Principal, need(Role.VIEWER)]
Operator = Annotated[Principal, need(Role.OPERATOR)]
Admin = Annotated[Principal, need(Role.ADMIN)]

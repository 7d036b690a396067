"""Who may call the API: bearer tokens or a signed-in console session, and the two roles.

Every endpoint but ``/health``, the OpenAPI document and the docs, and the console's sign-in
page and assets needs a principal: ``Authorization: Bearer <token>`` (the CLI, scripts) or the
session cookie the console's sign-in sets (signed by Starlette's ``SessionMiddleware`` with
itsdangerous; it holds the token's id and role, never the token). A session ends when its
token is revoked. A write made with a session cookie must also carry the session's CSRF value
in ``X-Choreo-CSRF`` (the console's pages send it), so another site cannot act for a signed-in
operator. No credential: 401 with ``WWW-Authenticate: Bearer``; a viewer calling an operator
endpoint: 403; both in the API's one JSON error shape. Tokens are never logged.
"""

from __future__ import annotations

import secrets
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from projections.tokens import Principal, Role, TokenStore

CSRF_HEADER = "X-Choreo-CSRF"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_bearer = HTTPBearer(
    auto_error=False,
    description="An API token (`choreo tokens create --role viewer|operator`).",
)


def token_store(request: Request) -> TokenStore:
    """The app's token store."""
    store: TokenStore = request.app.state.tokens
    return store


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(HTTPStatus.UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


async def authenticate(store: TokenStore, token: str) -> Principal | None:
    """The principal of ``token`` (the Argon2 check runs off the event loop)."""
    return await run_in_threadpool(store.authenticate, token.strip())


def session_principal(request: Request) -> Principal | None:
    """The principal of the request's console session, if it has one whose token exists."""
    token_id = request.session.get("token_id")
    if not token_id:
        return None
    principal = token_store(request).principal(token_id)
    if principal is None:
        request.session.clear()  # the token was revoked: the session ends with it
    return principal


def sign_in(request: Request, principal: Principal) -> None:
    """Start a console session for ``principal``."""
    request.session.clear()
    request.session.update({"token_id": principal.token_id, "csrf": secrets.token_urlsafe(24)})


def sign_out(request: Request) -> None:
    """End the request's console session."""
    request.session.clear()


def csrf_value(request: Request) -> str:
    """The CSRF value of the request's session (the console puts it in its pages)."""
    return str(request.session.get("csrf", ""))


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, from a bearer token or the session cookie; 401 if neither is valid."""
    store = token_store(request)
    if credentials is not None:
        found = await authenticate(store, credentials.credentials)
        if found is None:
            raise _unauthorized("invalid or revoked token")
        return found
    if request.headers.get("authorization"):
        raise _unauthorized("use `Authorization: Bearer <token>`")
    found = session_principal(request)
    if found is None:
        if not store.records():
            raise _unauthorized(
                "no API tokens configured: create one with `choreo tokens create --role operator`"
            )
        raise _unauthorized("sign in: send `Authorization: Bearer <token>` or sign in at /console")
    if request.method not in SAFE_METHODS and not secrets.compare_digest(
        request.headers.get(CSRF_HEADER, ""), csrf_value(request)
    ):
        raise HTTPException(
            HTTPStatus.FORBIDDEN, f"a session's writes need the {CSRF_HEADER} header"
        )
    return found


def require(role: Role) -> Any:  # what Depends() is typed as
    """A dependency that lets in principals with ``role`` (or higher) and answers 403 else."""

    async def dependency(caller: Annotated[Principal, Depends(principal)]) -> Principal:
        if not caller.may(role):
            raise HTTPException(
                HTTPStatus.FORBIDDEN, f"{caller.name} is a {caller.role}; this needs {role}"
            )
        return caller

    return Depends(dependency)


def may_answer(caller: Principal, saga_type: str) -> None:
    """403 unless ``caller`` may answer the human tasks of ``saga_type`` (an operator of it)."""
    if not caller.may_answer(saga_type):
        raise HTTPException(
            HTTPStatus.FORBIDDEN,
            f"{caller.name} may answer sagas of {caller.scope}, not {saga_type}",
        )


def may_redrive(caller: Principal) -> None:
    """403 unless ``caller`` is an operator of every saga type: a dead letter's saga type is
    not known before it is redriven."""
    if not caller.unscoped_operator:
        raise HTTPException(
            HTTPStatus.FORBIDDEN,
            f"{caller.name} may answer sagas of {caller.scope} only; redriving dead letters"
            " needs an operator of every saga type",
        )


Viewer = Annotated[Principal, require("viewer")]
"""An endpoint parameter: the caller, who may read."""

Operator = Annotated[Principal, require("operator")]
"""An endpoint parameter: the caller, who may act (approve, reject, redrive)."""

"""Login/logout and the own account page (sessions, API tokens, password)."""

from __future__ import annotations

import secrets
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from app.deps import SESSION_COOKIE, CurrentUser, SessionDep, SettingsDep, login_id
from app.errors import DomainError, InvalidInput, TooManyRequests
from app.security import login_form_token, same_token
from app.services.accounts import login as login_service
from app.services.accounts import sessions as login_sessions
from app.services.accounts import users as users_service
from app.settings import Settings
from app.templating import render

router = APIRouter()


def safe_next(target: str | None) -> str:
    """Only a path on this site: never another host (open redirect) or the login page itself."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ord(c) < 32 or ord(c) == 127 for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.path.startswith("/login"):
        return "/"
    return target


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def set_session_cookie(response: Response, settings: Settings, value: str) -> None:
    """The only cookie: a random id (a login session's, or a pre-login one for the form)."""
    response.set_cookie(
        SESSION_COOKIE, value, max_age=settings.session_max_age_s, path="/", httponly=True,
        samesite="lax", secure=settings.cookie_secure,
    )  # fmt: skip


def _login_form(
    request: Request, settings: Settings, next_: str, error: str = "", status: int = 200
) -> Response:
    """The form, with a CSRF token bound to the browser's pre-login cookie (login CSRF)."""
    cookie = request.cookies.get(SESSION_COOKIE) or secrets.token_urlsafe(32)
    request.state.csrf = login_form_token(settings.secret_key, cookie)
    ctx = {"next": next_, "error": error, "username": ""}
    response = render(request, "login.html", ctx, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    if request.cookies.get(SESSION_COOKIE) != cookie:
        set_session_cookie(response, settings, cookie)
    return response


@router.get("/login")
def login_page(
    request: Request, session: SessionDep, settings: SettingsDep, next: str = "/"
) -> Response:
    found = login_sessions.resolve(session, settings, request.cookies.get(SESSION_COOKIE))
    if found.login is not None:
        return _see_other(safe_next(next))
    return _login_form(request, settings, next)


@router.post("/login")
async def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE, "")
    if not cookie or not same_token(login_form_token(settings.secret_key, cookie), csrf_token):
        msg = "the login form had expired; please try again"
        return _login_form(request, settings, next, msg, status=403)
    client = request.client.host if request.client else ""
    agent = request.headers.get("user-agent", "")
    try:
        done = await login_service.log_in(
            session, settings, username.strip(), password, client=client, agent=agent
        )
    except TooManyRequests as exc:
        response = _login_form(request, settings, next, exc.detail, status=exc.status_code)
        return _retry_after(response, exc)
    if done is None:
        return _login_form(request, settings, next, "wrong username or password", status=401)
    response = _see_other(safe_next(next))
    set_session_cookie(response, settings, done.sid)  # a new id: nothing from before carries over
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    login_service.log_out(session, user, login_id(request))
    response = _see_other("/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- the own account -------------------------------------------------------------------------


def _retry_after(response: Response, exc: DomainError) -> Response:
    if isinstance(exc, TooManyRequests):
        response.headers["Retry-After"] = str(max(1, int(exc.retry_after)))
    return response


def _account(
    request: Request, session, settings: Settings, user, status: int = 200, **ctx
) -> Response:  # noqa: ANN001
    ctx = {
        "tokens": users_service.list_tokens(session, user),
        "sessions": login_sessions.active_for(session, settings, user),
        "current_login": login_id(request),
        "nav": "account",
        **ctx,
    }
    response = render(request, "account.html", ctx, status_code=status)
    response.headers["Cache-Control"] = "no-store"  # a new token is shown on this page once
    return response


@router.get("/account")
def account_page(
    request: Request, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> Response:
    return _account(request, session, settings, user)


@router.post("/account/tokens")
def create_token(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    name: Annotated[str, Form(max_length=100)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    try:
        users_service.reauthenticate(session, settings, user, password)
    except DomainError as exc:
        response = _account(request, session, settings, user, exc.status_code,
                            token_error=exc.detail)  # fmt: skip
        return _retry_after(response, exc)
    _, token = users_service.issue_token(session, user, name or "unnamed")
    return _account(
        request, session, settings, user, new_token=token, new_token_name=name or "unnamed"
    )


@router.post("/account/tokens/{token_id}/revoke")
def revoke_token(session: SessionDep, user: CurrentUser, token_id: int) -> Response:
    users_service.revoke_token(session, user, token_id)
    return _see_other("/account")


@router.post("/account/sessions/{session_id}/end")
def end_session(session: SessionDep, user: CurrentUser, session_id: int) -> Response:
    login_sessions.end_own(session, user, session_id)
    return _see_other("/account")


@router.post("/account/sessions/end-others")
def end_other_sessions(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    login_sessions.end_for_user(session, user.id, "user", keep_id=login_id(request))
    return _see_other("/account")


@router.post("/account/password")
def change_password(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    current: Annotated[str, Form(max_length=1024)] = "",
    new: Annotated[str, Form(max_length=1024)] = "",
    confirm: Annotated[str, Form(max_length=1024)] = "",
    revoke_tokens: Annotated[str, Form(max_length=8)] = "1",
) -> Response:
    """A password change ends every other session; all API tokens go too unless unticked."""
    try:
        if new != confirm:
            raise InvalidInput("the new password and its confirmation differ")
        revoked = users_service.change_password(
            session, settings, user, current, new, keep_login_id=login_id(request),
            revoke_tokens=revoke_tokens not in ("0", "", "off", "false"),
        )  # fmt: skip
    except DomainError as exc:
        response = _account(request, session, settings, user, exc.status_code,
                            password_error=exc.detail)  # fmt: skip
        return _retry_after(response, exc)
    msg = "Password changed; your other sessions have ended."
    if revoked:
        msg += f" {revoked} API token{'' if revoked == 1 else 's'} revoked."
    return _account(request, session, settings, user, password_message=msg)

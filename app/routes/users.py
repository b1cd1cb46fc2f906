"""Admin user management (pages and JSON) and the own account as JSON (/api/me...)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from app.deps import AdminUser, CurrentUser, SessionDep, SettingsDep, login_id
from app.errors import DomainError
from app.schemas.auth import (
    EndedOut,
    PasswordChanged,
    PasswordIn,
    SessionOut,
    TokenCreated,
    TokenIn,
    TokenOut,
    UserIn,
    UserOut,
)
from app.services.accounts import sessions as login_sessions
from app.services.accounts import users as users_service
from app.templating import render

router = APIRouter()
Action = Literal["deactivate", "activate"]


# --- admin pages -----------------------------------------------------------------------------


def _users(request: Request, session, status: int = 200, **ctx) -> Response:  # noqa: ANN001
    ctx = {
        "users": users_service.list_users(session),
        "open_sessions": login_sessions.active_counts(session),
        "nav": "users",
        **ctx,
    }
    return render(request, "users.html", ctx, status_code=status)


@router.get("/users")
def users_page(request: Request, session: SessionDep, admin: AdminUser) -> Response:
    return _users(request, session)


@router.post("/users")
def create_user_form(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    username: Annotated[str, Form(max_length=64)] = "",
    role: Annotated[str, Form(max_length=16)] = "reviewer",
    password: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    try:
        users_service.create_user(session, username.strip(), role, password, actor=admin)
    except DomainError as exc:
        return _users(request, session, exc.status_code, error=exc.detail, form_username=username)
    return RedirectResponse("/users", status_code=303)


@router.post("/users/{user_id}/sessions/end")
def end_sessions_form(session: SessionDep, admin: AdminUser, user_id: int) -> Response:
    users_service.end_sessions(session, admin, user_id)
    return RedirectResponse("/users", status_code=303)


@router.post("/users/{user_id}/{action}")
def set_active_form(
    session: SessionDep, admin: AdminUser, user_id: int, action: Action
) -> Response:
    users_service.set_active(session, admin, user_id, active=action == "activate")
    return RedirectResponse("/users", status_code=303)


# --- JSON: the own account -------------------------------------------------------------------


@router.get("/api/me")
def api_me(user: CurrentUser) -> UserOut:
    return UserOut.of(user)


@router.get("/api/me/sessions")
def api_my_sessions(
    request: Request, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> list[SessionOut]:
    current = login_id(request)
    return [SessionOut.of(r, current) for r in login_sessions.active_for(session, settings, user)]


@router.post("/api/me/sessions/{session_id}/end")
def api_end_my_session(session: SessionDep, user: CurrentUser, session_id: int) -> EndedOut:
    login_sessions.end_own(session, user, session_id)
    return EndedOut(ended=1)


@router.get("/api/me/tokens")
def api_my_tokens(session: SessionDep, user: CurrentUser) -> list[TokenOut]:
    return [TokenOut.of(t) for t in users_service.list_tokens(session, user)]


@router.post("/api/me/tokens", status_code=201)
def api_create_token(
    session: SessionDep, settings: SettingsDep, user: CurrentUser, body: TokenIn
) -> TokenCreated:
    """Needs the password again (403 without it)."""
    users_service.reauthenticate(session, settings, user, body.password)
    row, token = users_service.issue_token(session, user, body.name or "unnamed")
    return TokenCreated(**TokenOut.of(row).model_dump(), token=token)


@router.delete("/api/me/tokens/{token_id}", status_code=204)
def api_revoke_token(session: SessionDep, user: CurrentUser, token_id: int) -> Response:
    users_service.revoke_token(session, user, token_id)
    return Response(status_code=204)


@router.post("/api/me/password")
def api_change_password(
    request: Request, session: SessionDep, settings: SettingsDep, user: CurrentUser,
    body: PasswordIn,
) -> PasswordChanged:  # fmt: skip
    keep = login_id(request)
    revoked = users_service.change_password(
        session, settings, user, body.current, body.new, keep_login_id=keep,
        revoke_tokens=body.revoke_tokens,
    )  # fmt: skip
    return PasswordChanged(tokens_revoked=revoked, sessions_kept=int(keep is not None))


# --- JSON: admin -----------------------------------------------------------------------------


@router.get("/api/users")
def api_users(session: SessionDep, admin: AdminUser) -> list[UserOut]:
    return [UserOut.of(u) for u in users_service.list_users(session)]


@router.post("/api/users", status_code=201)
def api_create_user(session: SessionDep, admin: AdminUser, body: UserIn) -> UserOut:
    user = users_service.create_user(session, body.username, body.role, body.password, admin)
    return UserOut.of(user)


@router.post("/api/users/{user_id}/sessions/end")
def api_end_sessions(session: SessionDep, admin: AdminUser, user_id: int) -> EndedOut:
    return EndedOut(ended=users_service.end_sessions(session, admin, user_id))


@router.post("/api/users/{user_id}/{action}")
def api_set_active(session: SessionDep, admin: AdminUser, user_id: int, action: Action) -> UserOut:
    user = users_service.set_active(session, admin, user_id, active=action == "activate")
    return UserOut.of(user)

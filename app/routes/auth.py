"""Accounts: login/logout, the own account (API tokens, password), admin user management."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel

from app.deps import AdminUser, CurrentUser, SessionDep
from app.errors import DomainError, InvalidInput
from app.models import User
from app.security import new_csrf_token, same_token, session_fingerprint
from app.services.accounts import users as users_service
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


def _login_form(request: Request, next_: str, error: str = "", status: int = 200) -> Response:
    if not request.session.get("csrf"):
        request.session["csrf"] = new_csrf_token()  # pre-session token against login CSRF
    ctx = {"next": next_, "error": error, "username": ""}
    return render(request, "login.html", ctx, status_code=status)


@router.get("/login")
def login_page(request: Request, session: SessionDep, next: str = "/") -> Response:
    uid = request.session.get("uid")
    user = session.get(User, uid) if uid is not None else None
    if user is not None and user.is_active:
        return _see_other(safe_next(next))
    return _login_form(request, next)


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    if not same_token(request.session.get("csrf"), csrf_token):
        request.session.clear()
        msg = "the login form had expired; please try again"
        return _login_form(request, next, msg, status=403)
    client = request.client.host if request.client else ""
    user = users_service.log_in(session, username.strip(), password, client=client)
    session.commit()
    if user is None:
        return _login_form(request, next, "wrong username or password", status=401)
    request.session.clear()  # a new session: nothing from before the login carries over
    request.session.update(
        {"uid": user.id, "csrf": new_csrf_token(), "pw": session_fingerprint(user)}
    )
    return _see_other(safe_next(next))


@router.post("/logout")
def logout(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    users_service.log_out(session, user)
    session.commit()
    request.session.clear()
    return _see_other("/login")


# --- the own account -------------------------------------------------------------------------


def _account(request: Request, session, user: User, status: int = 200, **ctx) -> Response:
    ctx = {"tokens": users_service.list_tokens(session, user), "nav": "account", **ctx}
    response = render(request, "account.html", ctx, status_code=status)
    response.headers["Cache-Control"] = "no-store"  # a new token is shown on this page once
    return response


@router.get("/account")
def account_page(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    return _account(request, session, user)


@router.post("/account/tokens")
def create_token(
    request: Request, session: SessionDep, user: CurrentUser, name: Annotated[str, Form()] = ""
) -> Response:
    token = users_service.create_token(session, user, name or "unnamed")
    session.commit()
    return _account(request, session, user, new_token=token, new_token_name=name or "unnamed")


@router.post("/account/tokens/{token_id}/revoke")
def revoke_token(session: SessionDep, user: CurrentUser, token_id: int) -> Response:
    users_service.revoke_token(session, user, token_id)
    session.commit()
    return _see_other("/account")


@router.post("/account/password")
def change_password(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    current: Annotated[str, Form()] = "",
    new: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
) -> Response:
    try:
        if new != confirm:
            raise InvalidInput("the new password and its confirmation differ")
        users_service.change_password(session, user, current, new)
        session.commit()
    except DomainError as exc:
        session.rollback()
        return _account(request, session, user, exc.status_code, password_error=exc.detail)
    request.session["pw"] = session_fingerprint(user)  # this session stays; all others end
    return _account(request, session, user, password_message="Password changed.")


# --- admin: users ----------------------------------------------------------------------------


def _users(request: Request, session, status: int = 200, **ctx) -> Response:
    ctx = {"users": users_service.list_users(session), "nav": "users", **ctx}
    return render(request, "users.html", ctx, status_code=status)


@router.get("/users")
def users_page(request: Request, session: SessionDep, admin: AdminUser) -> Response:
    return _users(request, session)


@router.post("/users")
def create_user_form(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    username: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "reviewer",
    password: Annotated[str, Form()] = "",
) -> Response:
    try:
        users_service.create_user(session, username.strip(), role, password, actor=admin)
        session.commit()
    except DomainError as exc:
        session.rollback()
        return _users(request, session, exc.status_code, error=exc.detail, form_username=username)
    return _see_other("/users")


@router.post("/users/{user_id}/{action}")
def set_active_form(
    session: SessionDep, admin: AdminUser, user_id: int, action: Literal["deactivate", "activate"]
) -> Response:
    users_service.set_active(session, admin, user_id, active=action == "activate")
    session.commit()
    return _see_other("/users")


# --- JSON --------------------------------------------------------------------------------------


class UserOut(BaseModel):
    id: int
    username: str
    role: str
    is_active: bool

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(id=user.id, username=user.username, role=user.role, is_active=user.is_active)


class UserIn(BaseModel):
    username: str
    role: Literal["admin", "reviewer"]
    password: str


@router.get("/api/me")
def api_me(user: CurrentUser) -> UserOut:
    return UserOut.of(user)


@router.get("/api/users")
def api_users(session: SessionDep, admin: AdminUser) -> list[UserOut]:
    return [UserOut.of(u) for u in users_service.list_users(session)]


@router.post("/api/users", status_code=201)
def api_create_user(session: SessionDep, admin: AdminUser, body: UserIn) -> UserOut:
    user = users_service.create_user(session, body.username, body.role, body.password, admin)
    session.commit()
    return UserOut.of(user)


@router.post("/api/users/{user_id}/{action}")
def api_set_active(
    session: SessionDep, admin: AdminUser, user_id: int, action: Literal["deactivate", "activate"]
) -> UserOut:
    user = users_service.set_active(session, admin, user_id, active=action == "activate")
    session.commit()
    return UserOut.of(user)

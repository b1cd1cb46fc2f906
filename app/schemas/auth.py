"""Request and response models of the account routes (/api/me, /api/users)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.models import ApiToken, LoginSession, User


class UserOut(BaseModel):
    id: int
    username: str
    role: str
    is_active: bool

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(id=user.id, username=user.username, role=user.role, is_active=user.is_active)


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(max_length=64)
    role: Literal["admin", "reviewer"]
    password: str = Field(max_length=1024)


class SessionOut(BaseModel):
    """One of the user's login sessions (where and when, never the cookie)."""

    id: int
    created_at: datetime
    last_seen_at: datetime
    client: str
    user_agent: str
    current: bool

    @classmethod
    def of(cls, row: LoginSession, current_id: int | None) -> SessionOut:
        return cls(
            id=row.id,
            created_at=row.created_at,
            last_seen_at=row.last_seen_at,
            client=row.client,
            user_agent=row.user_agent,
            current=row.id == current_id,
        )


class EndedOut(BaseModel):
    ended: int


class TokenOut(BaseModel):
    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None

    @classmethod
    def of(cls, row: ApiToken) -> TokenOut:
        return cls(
            id=row.id, name=row.name, created_at=row.created_at, last_used_at=row.last_used_at
        )


class TokenIn(BaseModel):
    """A new token needs the account's password again: a stolen session alone cannot mint one."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=100)
    password: str = Field(default="", max_length=1024)


class TokenCreated(TokenOut):
    token: str = Field(description="the token itself; shown only in this response")


class PasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current: str = Field(max_length=1024)
    new: str = Field(max_length=1024)
    revoke_tokens: bool = Field(default=True, description="also revoke every API token")


class PasswordChanged(BaseModel):
    tokens_revoked: int
    sessions_kept: int = Field(description="1 when the session that changed it stays logged in")

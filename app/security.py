"""Password hashing (argon2, on its own small thread pool), API tokens (only their SHA-256 is
stored), session ids and CSRF tokens."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.errors import ServiceBusy

_hasher = PasswordHasher()
# argon2 costs ~50 ms of CPU and 64 MiB per call. Two workers of their own keep a flood of
# anonymous logins from taking the request thread pool (and the cores) from everyone else.
HASH_WORKERS = 2
MAX_WAITING_HASHES = 32
_pool = ThreadPoolExecutor(max_workers=HASH_WORKERS, thread_name_prefix="argon2")
_waiting = 0
_waiting_lock = threading.Lock()


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _admit() -> None:
    global _waiting
    with _waiting_lock:
        if _waiting >= MAX_WAITING_HASHES:
            raise ServiceBusy("the server is busy checking passwords; try again in a moment")
        _waiting += 1


def _done(_future=None) -> None:  # noqa: ANN001
    global _waiting
    with _waiting_lock:
        _waiting -= 1


def _run(fn, *args):  # noqa: ANN001, ANN202
    _admit()
    future = _pool.submit(fn, *args)
    future.add_done_callback(_done)
    return future


def hash_password(password: str) -> str:
    """Hash on the argon2 pool (call from a worker thread, not the event loop)."""
    return _run(_hasher.hash, password).result()


def verify_password(password_hash: str, password: str) -> bool:
    return _run(_verify, password_hash, password).result()


async def verify_password_async(password_hash: str, password: str) -> bool:
    """The login's check: waits on the argon2 pool without holding a request thread."""
    return await asyncio.wrap_future(_run(_verify, password_hash, password))


def new_api_token() -> str:
    return "ms_" + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def login_form_token(secret_key: str, cookie: str) -> str:
    """The login form's CSRF token, bound to the browser's pre-login cookie (double submit),
    so anonymous visitors need no server-side row."""
    mac = hmac.new(secret_key.encode(), b"login-form:" + cookie.encode(), hashlib.sha256)
    return mac.hexdigest()


def same_token(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two tokens; any text (non-ASCII too) is simply unequal."""
    if not a or not b:
        return False
    return hmac.compare_digest(
        a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass")
    )

"""Domain errors raised by services; one handler maps them to 4xx JSON or an HTML message."""

from __future__ import annotations


class DomainError(Exception):
    """An error in the user's input or request that the user can fix; never a traceback."""

    status_code = 400

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class InvalidInput(DomainError):
    status_code = 422


class InvalidVolume(InvalidInput):
    """A file that is not a usable CT volume (corrupt gzip, not NIfTI, wrong dimensions...)."""


class NotFound(DomainError):
    status_code = 404


class Conflict(DomainError):
    status_code = 409


class Forbidden(DomainError):
    status_code = 403


class PayloadTooLarge(DomainError):
    status_code = 413


class NotAuthenticated(DomainError):
    status_code = 401


class InsufficientStorage(DomainError):
    status_code = 507


class TooManyRequests(DomainError):
    """Back off and retry: a login back-off or a full generation queue (Retry-After seconds)."""

    status_code = 429

    def __init__(self, detail: str, retry_after: float = 1.0):
        super().__init__(detail)
        self.retry_after = retry_after


class ServiceBusy(TooManyRequests):
    """The server is saturated for everyone (not this client's fault): 503 with Retry-After."""

    status_code = 503

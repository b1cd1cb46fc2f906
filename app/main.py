"""The FastAPI application: settings, database, middleware, routers and the one error handler."""

from __future__ import annotations

import errno
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.db import make_engine, make_sessionmaker
from app.errors import DomainError, NotAuthenticated, TooManyRequests
from app.http_guards import BodyCheck, SecurityHeaders, guard_input
from app.routes import (
    auth,
    datasets,
    docs,
    home,
    jobs,
    metrics,
    snapshots,
    studies,
    users,
    utility,
    volumes,
)
from app.services import limits
from app.services.evaluation.metric_monitor import MetricRunFollower
from app.services.studies.prepare import StudyPreparer
from app.services.training.job_monitor import JobMonitor
from app.services.utility.monitor import UtilityRunFollower
from app.settings import Settings, load_settings
from app.templating import is_htmx, render

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api") or "application/json" in request.headers.get(
        "accept", ""
    )


def _return_page(request: Request) -> str:
    """Where the login sends the user back: this page for a GET, else the page the request
    came from (a POST URL would answer 405 to the login's GET redirect). Issue 14."""
    if request.method in ("GET", "HEAD"):
        query = request.url.query
        return request.url.path + (f"?{query}" if query else "")
    origin = urlsplit(request.headers.get("hx-current-url") or request.headers.get("referer", ""))
    if origin.netloc and origin.netloc != request.url.netloc:
        return "/"
    return (origin.path or "/") + (f"?{origin.query}" if origin.query else "")


def _error_response(request: Request, status: int, detail: str) -> Response:
    """The one place that decides how an error reaches the user (JSON, htmx toast, or a page)."""
    if status == 401 and not _wants_json(request):
        target = "/login?next=" + quote(_return_page(request))
        if is_htmx(request):
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)
    if _wants_json(request) or is_htmx(request):
        # htmx does not swap 4xx; static/js/app.js shows `detail` in the toast region.
        return JSONResponse({"detail": detail}, status_code=status)
    return render(request, "error.html", {"status": status, "detail": detail}, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> Response:
        response = _error_response(request, exc.status_code, exc.detail)
        if isinstance(exc, TooManyRequests):
            response.headers["Retry-After"] = str(max(1, int(exc.retry_after)))
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query"))
            parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
        return _error_response(request, 422, "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return _error_response(request, exc.status_code, str(exc.detail))

    _install_storage_handlers(app)


log = logging.getLogger(__name__)
DISK_FULL = "the server's disk is full, so nothing was saved; ask an admin to free space"


def _install_storage_handlers(app: FastAPI) -> None:
    """What reached the database or the disk and could not be stored: a 4xx/507, never a 500."""

    @app.exception_handler(OverflowError)
    async def _overflow(request: Request, exc: OverflowError) -> Response:
        # SQLite refuses Python ints beyond 64 bits (ids in a query string or form, say).
        return _error_response(request, 422, "a number in the request is out of range")

    @app.exception_handler(DataError)
    async def _data_error(request: Request, exc: DataError) -> Response:
        # PostgreSQL checks what SQLite lets through: INTEGER ids beyond 32 bits, text longer
        # than its column, NUL characters (psycopg refuses them).
        log.warning("%s %s: the database refused a value: %s", request.method,
                    request.url.path, str(exc.orig).splitlines()[0])  # fmt: skip
        return _error_response(
            request, 422, "a value in the request is out of range or too long to be stored"
        )

    @app.exception_handler(UnicodeEncodeError)
    async def _unencodable(request: Request, exc: UnicodeEncodeError) -> Response:
        return _error_response(request, 422, "text in the request contains a lone surrogate")

    @app.exception_handler(OSError)
    async def _os_error(request: Request, exc: OSError) -> Response:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return _error_response(request, 507, DISK_FULL)
        raise exc

    @app.exception_handler(OperationalError)
    async def _db_error(request: Request, exc: OperationalError) -> Response:
        full = "disk is full" in str(exc.orig) or getattr(exc.orig, "sqlstate", "") == "53100"
        if full:
            return _error_response(request, 507, DISK_FULL)
        raise exc


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    settings.ensure_dirs()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Follows trainer and metrics processes (issues 4, 5); they outlive the app and a
        # restart re-attaches.
        followers = [MetricRunFollower(settings), UtilityRunFollower(settings),
                     StudyPreparer(settings, app.state.sessionmaker)]  # fmt: skip
        monitor = JobMonitor(settings, app.state.sessionmaker, followers=followers)
        app.state.monitor = monitor.start()
        yield
        app.state.monitor.stop()
        app.state.engine.dispose()

    # /docs and /openapi.json are routes of their own (app/routes/docs.py) that need a user.
    app = FastAPI(
        title="MedSynth",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(guard_input)],  # out-of-range ids, unstorable text: 422 (issue 16)
    )
    app.state.settings = settings
    app.state.engine = make_engine(settings.database_url)
    app.state.sessionmaker = make_sessionmaker(app.state.engine)
    app.state.generation_queue = limits.generation_queue(settings)
    app.add_middleware(BodyCheck)
    app.add_middleware(SecurityHeaders, hsts=settings.cookie_secure)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    _install_error_handlers(app)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        return {"status": "ok"}

    routers = (auth, users, docs, home, volumes, datasets, jobs, snapshots, metrics, studies)
    for module in (*routers, utility):
        app.include_router(module.router)
    return app


__all__ = ["create_app", "NotAuthenticated"]

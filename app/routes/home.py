"""The start page: what is there, what is reviewed, what happened lately, and where to go next."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.deps import CurrentUser, SessionDep
from app.services.dashboard import overview, recent_activity
from app.templating import render

router = APIRouter()


@router.get("/")
def home(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    activity = recent_activity(session, viewer=user)
    ctx = {"stats": overview(session), "activity": activity, "nav": "home"}
    return render(request, "home.html", ctx)

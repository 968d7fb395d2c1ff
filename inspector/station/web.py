"""The operator page's web application (Starlette, served by uvicorn from :mod:`inspector.station.ui`).

Read-only without a login: the page, its state and charts, the archive's rejects and pictures, the
calibration in force. Changing anything needs an authenticated ``operator`` session: acknowledging
a line stop (the PLC's fault-reset coil) and marking a reject as a false reject (stored in the
archive). Every change is recorded in the archive's events with the user's name.

Security: sessions are signed cookies (Starlette's SessionMiddleware, itsdangerous; HttpOnly,
SameSite=Strict, Secure unless ``[ui] secure_cookies = false``, lifetime ``session_hours``).
Every POST needs the session's CSRF token in the ``X-CSRF-Token`` header (the synchronizer-token
pattern; the page gets it from ``GET /api/session``) and, when the browser sends one, an
``Origin`` equal to the page's own. Passwords: :mod:`inspector.station.auth`. Responses carry a
Content-Security-Policy that allows scripts from this server only (no inline script).

Routes::

    GET  /                          the page (static/index.html + app.js + uPlot)
    GET  /api/session               {user, role, csrf}
    GET  /api/state                 live counts, rates, latency, health, line stop, archive counters
    GET  /api/series                chart data (per-second counts, scores with thresholds)
    GET  /api/rejects               archive query: camera, decision (default REJECT + FAULT; ok=1: all),
                                    reason, since_ns, until_ns, after_id, false_reject, limit
    GET  /api/calibration           the profiles in force, their report figures (estimated FRR)
    GET  /api/events                server-sent events: "state" every 0.5 s, "reject" per new archived reject
    GET  /archive/{id}/{file}       an entry's picture (SHA-256 checked; a corrupt one answers 409)
    GET  /calibration/{camera}/report.png
    POST /api/login, /api/logout
    POST /api/rejects/{id}/false-reject          operator
    POST /api/line-stop/{gateway}/ack            operator
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from inspector.judge.reasons import DECISIONS
from inspector.station.archive import CorruptEntry

STATIC = Path(__file__).with_name("static")
EVENT_TICK_S = 0.1            # how often new archive entries are looked for
STATE_EVERY_S = 0.5           # how often the state is pushed
CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _int_arg(request: Request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    if not value.isdigit():
        raise ValueError(f"{name} must be a non-negative integer")
    return int(value)


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
            await send(message)

        return await self.app(scope, receive, with_headers)


def build_app(station, *, secret: bytes, secure_cookies: bool, session_hours: float) -> Starlette:
    """The application over ``station`` (:class:`inspector.station.ui.Station`: archive, live line,
    line status, calibration, authenticator)."""

    def session_user(request: Request) -> tuple[str | None, str | None]:
        return request.session.get("user"), request.session.get("role")

    def csrf_token(request: Request) -> str:
        if "csrf" not in request.session:
            request.session["csrf"] = secrets.token_urlsafe(32)
        return request.session["csrf"]

    def check_post(request: Request, *, operator: bool) -> JSONResponse | None:
        """None when the POST may go on; otherwise the refusal (403 CSRF / origin, 401 login)."""
        sent = request.headers.get("x-csrf-token", "")
        expected = request.session.get("csrf", "")
        if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
            return _error(403, "missing or wrong CSRF token")
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
            return _error(403, "cross-origin request refused")
        if operator and session_user(request)[1] != "operator":
            return _error(401, "log in as an operator first")
        return None

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def session(request: Request) -> JSONResponse:
        user, role = session_user(request)
        return JSONResponse({"user": user, "role": role, "csrf": csrf_token(request),
                             "accounts": bool(station.auth.path)})

    async def state(request: Request) -> JSONResponse:
        return JSONResponse(station.state())

    async def series(request: Request) -> JSONResponse:
        return JSONResponse(station.live.series())

    async def rejects(request: Request) -> JSONResponse:
        q = request.query_params
        decision = q.get("decision") or None
        if decision is not None and decision not in DECISIONS:
            return _error(400, f"decision must be one of {DECISIONS}")
        try:
            entries = station.archive.query(
                camera=q.get("camera") or None, decision=decision, reason=q.get("reason") or None,
                since_ns=_int_arg(request, "since_ns"), until_ns=_int_arg(request, "until_ns"),
                after_id=_int_arg(request, "after_id"), limit=min(_int_arg(request, "limit") or 50, 500),
                false_reject={"1": True, "0": False}.get(q.get("false_reject", "")),
                rejects_only=decision is None and q.get("ok") != "1")
        except ValueError as exc:
            return _error(400, str(exc))
        return JSONResponse([e.public() for e in entries])

    async def calibration(request: Request) -> JSONResponse:
        return JSONResponse(station.calibration)

    async def report_png(request: Request) -> Response:
        path = station.report_png(request.path_params["camera"])
        return FileResponse(path, media_type="image/png") if path else _error(404, "no report")

    async def picture(request: Request) -> Response:
        entry = station.archive.get(int(request.path_params["entry_id"]))
        name = request.path_params["name"]
        if entry is None or name not in entry.files or Path(name).suffix not in CONTENT_TYPES:
            return _error(404, "no such picture")
        try:
            data = station.archive.read(entry, name)
        except CorruptEntry as exc:
            return _error(409, f"corrupt archive entry: {exc}")
        return Response(data, media_type=CONTENT_TYPES[Path(name).suffix],
                        headers={"Cache-Control": "private, max-age=3600"})

    async def events(request: Request) -> StreamingResponse:
        start = _int_arg(request, "after_id")
        last_id = start if start is not None else station.archive_last_id()

        async def stream():
            nonlocal last_id
            yield "retry: 1000\n\n"
            next_state = 0.0
            loop = asyncio.get_running_loop()
            while not station.stopping.is_set() and not await request.is_disconnected():
                for entry in station.archive.query(after_id=last_id, rejects_only=True, newest_first=False, limit=100):
                    last_id = entry.id
                    yield f"event: reject\nid: {entry.id}\ndata: {json.dumps(entry.public())}\n\n"
                if loop.time() >= next_state:
                    next_state = loop.time() + STATE_EVERY_S
                    yield f"event: state\ndata: {json.dumps(station.state())}\n\n"
                await asyncio.sleep(EVENT_TICK_S)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def login(request: Request) -> JSONResponse:
        refused = check_post(request, operator=False)
        if refused:
            return refused
        try:
            body = await request.json()
            name, password = str(body["user"]), str(body["password"])
        except (ValueError, KeyError, TypeError):
            return _error(400, "expected JSON {user, password}")
        role = await asyncio.to_thread(station.auth.login, name, password)
        if role is None:
            station.archive.event(name[:64], "login_failed", {"client": request.client.host if request.client else ""})
            return _error(401, "wrong user name or password (or too many attempts: wait a minute)")
        request.session.clear()
        request.session.update({"user": name, "role": role, "csrf": secrets.token_urlsafe(32)})
        station.archive.event(name, "login", {"client": request.client.host if request.client else ""})
        return JSONResponse({"user": name, "role": role, "csrf": request.session["csrf"]})

    async def logout(request: Request) -> JSONResponse:
        refused = check_post(request, operator=False)
        if refused:
            return refused
        request.session.clear()
        return JSONResponse({"user": None, "role": None, "csrf": csrf_token(request)})

    async def false_reject(request: Request) -> JSONResponse:
        refused = check_post(request, operator=True)
        if refused:
            return refused
        try:
            entry = station.archive.mark_false_reject(int(request.path_params["entry_id"]), session_user(request)[0])
        except KeyError:
            return _error(404, "no such archive entry")
        except ValueError as exc:
            return _error(400, str(exc))
        return JSONResponse(entry.public())

    async def acknowledge(request: Request) -> JSONResponse:
        refused = check_post(request, operator=True)
        if refused:
            return refused
        gateway = request.path_params["gateway"]
        if gateway not in station.line_status.clients:
            return _error(404, f"no PLC of gateway {gateway!r} can be reached from here")
        try:
            await asyncio.to_thread(station.line_status.acknowledge, gateway)
        except Exception as exc:  # the PLC refused or cannot be reached
            return _error(502, f"the PLC did not take the acknowledgement: {exc}")
        station.archive.event(session_user(request)[0], "line_stop_ack", {"gateway": gateway})
        return JSONResponse({"acknowledged": gateway})

    routes = [
        Route("/", page),
        Route("/api/session", session),
        Route("/api/state", state),
        Route("/api/series", series),
        Route("/api/rejects", rejects),
        Route("/api/calibration", calibration),
        Route("/api/events", events),
        Route("/archive/{entry_id:int}/{name}", picture),
        Route("/calibration/{camera}/report.png", report_png),
        Route("/api/login", login, methods=["POST"]),
        Route("/api/logout", logout, methods=["POST"]),
        Route("/api/rejects/{entry_id:int}/false-reject", false_reject, methods=["POST"]),
        Route("/api/line-stop/{gateway}/ack", acknowledge, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(SessionMiddleware, secret_key=secret.hex(), session_cookie="inspector_session",
                   max_age=int(session_hours * 3600), same_site="strict", https_only=secure_cookies),
    ]
    return Starlette(routes=routes, middleware=middleware)


def public_state(value: Any) -> Any:
    """JSON-safe copy (NaN and infinities -> None) of a state dict."""
    if isinstance(value, dict):
        return {k: public_state(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [public_state(v) for v in value]
    if isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
        return None
    return value

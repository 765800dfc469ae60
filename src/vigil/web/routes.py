"""The operator console under ``/ui``: server-rendered pages (Jinja2) over the same runtime as the
REST API. Actions call the runtime's own operations (start, cancel, judge), so the console and the
API cannot disagree; the live journal reuses the API's event stream with cookie authentication.

Pages answer errors as HTML pages, with the same status codes as the API (401, 403, 404, 400)."""

from __future__ import annotations

import json
import logging
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from vigil.api import routes_inv
from vigil.api.auth import ID_PATTERN, IdPath, Principal, SpacePath
from vigil.api.errors import ApiError, validation_message
from vigil.api.schemas import ManualStart, NoteIn
from vigil.errors import InputError, NotFound, VigilError
from vigil.model import ApiToken, HypothesisState, InvestigationStatus, Role, StartingPoint
from vigil.model.console_session import ConsoleSession
from vigil.services.console import decode_cursor
from vigil.web import evidence as evidence_view
from vigil.web.session import COOKIE, LOGIN_COOKIE, clear_cookie, same, set_cookie
from vigil.web.svg import graph_focus, topology_svg

log = logging.getLogger("vigil.web")
HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
STATIC = {"app.css": "text/css; charset=utf-8", "app.js": "text/javascript; charset=utf-8"}
PAGE_SIZE = 25
WINDOWS = {"15m": 15, "30m": 30, "1h": 60, "3h": 180, "12h": 720}


class UiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class ToLogin(Exception):
    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


def _error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return _secure(templates.TemplateResponse(request, "error.html", {"status": status, "message": message,
                                                                       "csrf": "", "spaces": [], "space": None,
                                                                       "token": None}, status_code=status))


def _secure(resp: Response) -> Response:
    """Console pages are not cached. (The security headers, CSP included, come from the app's one
    ``SecurityHeaders`` middleware, for every HTML response of the server.)"""
    resp.headers.setdefault("Cache-Control", "no-store")
    return resp


class UiRoute(APIRoute):
    """Errors of console routes become HTML pages instead of the API's JSON."""

    def get_route_handler(self):
        inner = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                resp = await inner(request)
            except ToLogin as exc:
                return RedirectResponse("/ui/login?next=" + quote(exc.next_path, safe="/"), status_code=303)
            except UiError as exc:
                return _error_page(request, exc.status, exc.message)
            except ApiError as exc:
                return _error_page(request, exc.status, exc.message)
            except NotFound as exc:
                return _error_page(request, 404, str(exc))
            except InputError as exc:
                return _error_page(request, getattr(exc, "status", 400), str(exc))
            except VigilError as exc:
                return _error_page(request, 400, str(exc))
            except RequestValidationError as exc:
                return _error_page(request, 422, validation_message(list(exc.errors())))
            except ValidationError as exc:
                return _error_page(request, 400, validation_message(list(exc.errors())))
            return _secure(resp) if not isinstance(resp, type(None)) else resp

        return handler


router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)


# -- request context ------------------------------------------------------------------------------
def _rt(request: Request):
    return request.app.state.runtime


def _sessions(request: Request):
    """Console sessions (``services.sessions``: this process's, or in scale-out mode the ones every
    replica shares)."""
    return _rt(request).services.sessions


def _session(request: Request) -> tuple[str | None, ConsoleSession | None]:
    sid = request.cookies.get(COOKIE)
    return sid, _sessions(request).get(sid)


def _live_tokens(request: Request, sess: ConsoleSession) -> dict[str, ApiToken]:
    """The session's tokens that still work (a revoked one leaves the session at once)."""
    tokens = _rt(request).services.tokens
    out = {}
    for space, tok_id in list(sess.tokens.items()):
        tok = tokens.live(tok_id)
        if tok is None or tok.space_id != space:
            sess.tokens.pop(space, None)
        else:
            out[space] = tok
    return out


class Ctx:
    def __init__(self, request: Request, space: str | None, sess: ConsoleSession, tokens: dict[str, ApiToken]) -> None:
        self.request, self.space, self.session, self.tokens = request, space, sess, tokens
        self.token = tokens.get(space) if space else None

    @property
    def can_act(self) -> bool:
        return bool(self.token and self.token.role.allows(Role.OPERATOR))

    @property
    def principal(self) -> Principal:
        assert self.token is not None
        return Principal(self.token)

    @property
    def actor(self) -> str:
        return self.principal.actor + " via console"

    def page(self, name: str, code: int = 200, **kw: Any) -> HTMLResponse:
        data = {"csrf": self.session.csrf, "spaces": sorted(self.tokens), "space": self.space, "token": self.token,
                "can_act": self.can_act, "path": self.request.url.path, **kw}
        return templates.TemplateResponse(self.request, name, data, status_code=code)


def _ctx(request: Request, space: str | None) -> Ctx:
    _sid, sess = _session(request)
    if sess is None:
        if request.method == "GET":
            raise ToLogin(request.url.path)
        raise UiError(401, "sign in first: your session ended")
    tokens = _live_tokens(request, sess)
    if not tokens:
        if request.method == "GET":
            raise ToLogin(request.url.path)
        raise UiError(401, "sign in first: your token was revoked")
    if space is not None and space not in tokens:
        raise UiError(403, f"you are not signed in to space {space!r}: sign in with one of its tokens")
    return Ctx(request, space, sess, tokens)


async def _form(request: Request, ctx: Ctx | None = None, *, need: Role = Role.OPERATOR) -> dict[str, str]:
    """A POSTed form, checked: urlencoded, same origin, the session's CSRF token, and the role."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise UiError(415, "forms must be sent as application/x-www-form-urlencoded")
    origin = request.headers.get("origin")
    if origin and origin != "null":
        o = urlsplit(origin)
        if (o.scheme, o.netloc) != (request.url.scheme, request.url.netloc):
            raise UiError(403, "cross-origin form submissions are refused")
    raw = (await request.body()).decode("utf-8", "replace")
    form = {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True, max_num_fields=50).items()}
    if ctx is not None:
        if not same(form.get("csrf"), ctx.session.csrf):
            raise UiError(403, "the form's CSRF token is missing or wrong: reload the page and try again")
        if ctx.token is None or not ctx.token.role.allows(need):
            have = ctx.token.role.value if ctx.token else "none"
            raise UiError(403, f"this needs the {need.value} role; your token for this space has {have}")
    return form


def _back(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


# -- static assets (ours, shipped in the package: nothing is fetched) -----------------------------
@router.get("/static/{name}")
def static(name: str):
    if name not in STATIC:
        raise UiError(404, "no such file")
    resp = Response((HERE / "static" / name).read_bytes(), media_type=STATIC[name])
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp


# -- sign in / out --------------------------------------------------------------------------------
def _safe_next(nxt: str | None) -> str | None:
    if nxt and nxt.startswith("/ui/") and not nxt.startswith("//") and "\\" not in nxt and len(nxt) < 500:
        return nxt
    return None


@router.get("")
@router.get("/")
def home(request: Request):
    _sid, sess = _session(request)
    tokens = _live_tokens(request, sess) if sess else {}
    if not tokens:
        return _back("/ui/login")
    return _back(f"/ui/s/{sorted(tokens)[0]}/")


@router.get("/login")
def login_page(request: Request, next: Annotated[str | None, Query(max_length=500)] = None):  # noqa: A002
    _sid, sess = _session(request)
    nonce = secrets.token_urlsafe(24)
    spaces = sorted(_live_tokens(request, sess)) if sess else []
    resp = templates.TemplateResponse(request, "login.html", {"login_csrf": nonce, "next": _safe_next(next) or "",
                                                              "csrf": sess.csrf if sess else "", "spaces": spaces,
                                                              "space": None, "token": None, "error": ""})
    set_cookie(resp, request, LOGIN_COOKIE, nonce, max_age=3600)
    return resp


@router.post("/login")
async def login(request: Request):
    form = await _form(request)
    if not same(form.get("login_csrf"), request.cookies.get(LOGIN_COOKIE)):
        raise UiError(403, "the sign-in form expired: reload the page and sign in again")
    secret = form.get("token", "").strip()
    tok = await run_in_threadpool(_rt(request).tokens.resolve, secret) if secret else None
    if tok is None:
        nonce = secrets.token_urlsafe(24)
        resp = templates.TemplateResponse(request, "login.html", {
            "login_csrf": nonce, "next": _safe_next(form.get("next")) or "", "csrf": "", "spaces": [],
            "space": None, "token": None, "error": "That token is not valid (unknown or revoked)."}, status_code=401)
        set_cookie(resp, request, LOGIN_COOKIE, nonce, max_age=3600)
        return resp
    sid, _sess = await run_in_threadpool(_sessions(request).sign_in, request.cookies.get(COOKIE), tok.space_id,
                                         tok.id, Principal(tok).actor)    # a new session id (no fixation)
    nxt = _safe_next(form.get("next"))
    if not nxt or f"/ui/s/{tok.space_id}/" not in nxt:
        nxt = f"/ui/s/{tok.space_id}/"
    resp = _back(nxt)
    set_cookie(resp, request, COOKIE, sid)
    clear_cookie(resp, request, LOGIN_COOKIE)
    return resp


@router.post("/logout")
async def logout(request: Request):
    sid, sess = _session(request)
    form = await _form(request)
    if sess is not None:
        if not same(form.get("csrf"), sess.csrf):
            raise UiError(403, "the form's CSRF token is missing or wrong: reload the page and try again")
        await run_in_threadpool(_sessions(request).sign_out, sid)
    resp = _back("/ui/login")
    clear_cookie(resp, request, COOKIE)
    return resp


# -- dashboard ------------------------------------------------------------------------------------
@router.get("/s/{space}/")
def dashboard(request: Request, space: SpacePath,
              after: Annotated[str | None, Query(max_length=200)] = None,
              status: InvestigationStatus | None = None):
    ctx = _ctx(request, space)
    rt = _rt(request)
    con = rt.services.console
    rows, nxt = con.investigations_page(space, PAGE_SIZE, decode_cursor(after), status)
    counts = con.status_counts(space)
    recorded = sorted(rt.services.telemetry.recorded_alerts(space), key=lambda a: a.at, reverse=True)[:5]
    return ctx.page("dashboard.html", rows=rows, next_cursor=nxt, paged=bool(after), status=status,
                    counts=counts, active=con.active_investigations(space),
                    incidents=rt.services.alerts.incidents(space, None, 8, 0), alerts=con.alert_feed(space),
                    recorded=recorded, workers=(rt.workers.alive(), rt.workers.size),
                    statuses=[s.value for s in InvestigationStatus])


# -- start an investigation -----------------------------------------------------------------------
@router.get("/s/{space}/start")
def start_page(request: Request, space: SpacePath):
    ctx = _ctx(request, space)
    if not ctx.can_act:
        raise UiError(403, f"starting an investigation needs the operator role; your token has {ctx.token.role.value}")
    return ctx.page("start.html", points=[p.value for p in StartingPoint], windows=list(WINDOWS),
                    now=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M"))


def _parse_when(text: str) -> datetime:
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"invalid date and time {text[:40]!r}: use YYYY-MM-DDTHH:MM (UTC)") from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


@router.post("/s/{space}/start")
async def start(request: Request, space: SpacePath):
    ctx = _ctx(request, space)
    form = await _form(request, ctx)
    target = form.get("space") or space
    if target != space:                         # the form's space selector: must be one signed in, as operator
        ctx = _ctx(request, target)
        if not ctx.can_act:
            raise UiError(403, f"starting an investigation in {target!r} needs the operator role")
    when = _parse_when(form.get("at") or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M"))
    if form.get("window") not in WINDOWS:
        raise InputError(f"invalid window {form.get('window', '')[:20]!r}: choose one of {', '.join(WINDOWS)}")
    half = timedelta(minutes=WINDOWS[form["window"]])
    point = form.get("starting_point", "")
    try:
        start, end = when - half, when + half
    except OverflowError:
        raise InputError(f"the date and time {form.get('at', '')[:40]!r} is out of range") from None
    body = ManualStart.model_validate({"starting_point": point, "start": start, "end": end,
                                       "at": when if point == StartingPoint.FREE_TEXT.value else None,
                                       "text": form.get("text", "")})
    inv = await run_in_threadpool(_rt(request).services.investigations.start_manual, target, body.starting_point,
                                  body.start, body.end, body.at, body.text, ctx.actor)
    return _back(f"/ui/s/{target}/investigations/{inv.id}")


# -- an investigation -----------------------------------------------------------------------------
def _findings(request: Request, ctx: Ctx, space: str, inv_id: str, h: str | None) -> dict[str, Any]:
    rt = _rt(request)
    inv = rt.services.investigations.get(space, inv_id)
    hyps = rt.services.investigations.hypotheses(space, inv_id)
    chosen = next((x for x in hyps if x.id == h), hyps[0] if hyps else None)
    ev = None
    if chosen is not None:           # from what the investigation saved: no source is read
        ev = evidence_view.build(inv, chosen)
    return {"inv": inv, "hyps": hyps, "chosen": chosen, "ev": ev, "Markup": Markup}


@router.get("/s/{space}/investigations/{inv_id}")
def investigation(request: Request, space: SpacePath, inv_id: IdPath,
                  h: Annotated[str | None, Query(pattern=ID_PATTERN)] = None):
    ctx = _ctx(request, space)
    data = _findings(request, ctx, space, inv_id, h)
    invs = _rt(request).services.investigations
    journal = invs.journal(space, inv_id)
    return ctx.page("investigation.html", journal=journal, last_seq=journal[-1].seq if journal else 0,
                    job=invs.job(space, inv_id), **data)


@router.get("/s/{space}/investigations/{inv_id}/panel")
def panel(request: Request, space: SpacePath, inv_id: IdPath,
          h: Annotated[str | None, Query(pattern=ID_PATTERN)] = None):
    """The findings part of the page (root cause, alternatives, evidence), for the live update."""
    ctx = _ctx(request, space)
    return ctx.page("_findings.html", **_findings(request, ctx, space, inv_id, h))


@router.get("/s/{space}/investigations/{inv_id}/events")
async def events(request: Request, space: SpacePath, inv_id: IdPath,
                 after: Annotated[int, Query(ge=0, le=10_000_000)] = 0):
    """The API's live journal stream, authenticated by the console's session cookie."""
    ctx = await run_in_threadpool(_ctx, request, space)
    return await routes_inv.journal_events(request, space, inv_id, ctx.principal, after)


@router.get("/s/{space}/investigations/{inv_id}/report")
def report(request: Request, space: SpacePath, inv_id: IdPath,
           format: Annotated[str, Query(pattern="^(md|json|html)$")] = "html"):  # noqa: A002
    ctx = _ctx(request, space)
    resp = routes_inv.get_report(request, space, inv_id, ctx.principal, format)
    resp.headers["Content-Disposition"] = f'attachment; filename="vigil-{inv_id}.{format}"'
    return resp


@router.post("/s/{space}/investigations/{inv_id}/cancel")
async def cancel(request: Request, space: SpacePath, inv_id: IdPath):
    ctx = _ctx(request, space)
    await _form(request, ctx)
    await run_in_threadpool(_rt(request).services.investigations.cancel, space, inv_id, ctx.actor)
    return _back(f"/ui/s/{space}/investigations/{inv_id}")


@router.post("/s/{space}/investigations/{inv_id}/hypotheses/{hyp_id}/{action}")
async def judge(request: Request, space: SpacePath, inv_id: IdPath, hyp_id: IdPath, action: str):
    ctx = _ctx(request, space)
    form = await _form(request, ctx)
    if action not in ("accept", "discard", "note"):
        raise UiError(404, f"no action {action[:20]!r}: accept, discard or note")
    note = (form.get("note") or "").strip() or None
    if action == "note":
        note = NoteIn.model_validate({"note": note or ""}).note
    elif note is not None and len(note) > 10_000:
        raise InputError("the note is longer than 10000 characters")
    state = {"accept": HypothesisState.ACCEPTED, "discard": HypothesisState.DISCARDED, "note": None}[action]
    await run_in_threadpool(_rt(request).services.investigations.judge, space, inv_id, hyp_id, ctx.actor, state,
                            note)
    return _back(f"/ui/s/{space}/investigations/{inv_id}?h={hyp_id}#hyp-{hyp_id}")


# -- topology -------------------------------------------------------------------------------------
_HEALTH_ORDER = {"suspect": 0, "affected": 1, "anomalous": 2, "ok": 3}
TABLE_ROWS = 500           # rows per topology table; the search narrows them


@router.get("/s/{space}/topology")
def topology(request: Request, space: SpacePath, q: Annotated[str, Query(max_length=200)] = ""):
    ctx = _ctx(request, space)
    rt = _rt(request)
    problems: list[str] = []
    topo, problem = rt.services.telemetry.topology_or_embedded(space)  # the embedded store's still shows
    if problem:
        problems.append(problem)
    inv_id, hyps = rt.services.investigations.latest_findings(space)
    health = {r.name: "ok" for r in topo.resources}
    for e in topo.edges:
        health.setdefault(e.src, "ok")
        health.setdefault(e.dst, "ok")
    for hyp in hyps[1:]:
        if hyp.confidence >= 0.05 and hyp.state is not HypothesisState.DISCARDED and hyp.resource in health:
            health[hyp.resource] = "anomalous"
    if hyps:
        top = next((x for x in hyps if x.state is HypothesisState.ACCEPTED), hyps[0])
        for n in top.path[1:]:
            health[n] = "affected"
        health[top.resource] = "suspect"
    else:
        top = None
    path = top.path if top else ()
    focus = graph_focus(topo, health, path)
    graph = topology_svg(topo, health, path, focus=focus, label=f"topology of space {space}")
    # the tables: every service and edge, most suspicious first, narrowed by the search, at most TABLE_ROWS
    kinds = {r.name: r.kind for r in topo.resources}
    needle = q.strip().lower()
    services = sorted(((n, h, kinds.get(n) or "service") for n, h in health.items() if needle in n.lower()),
                      key=lambda x: (_HEALTH_ORDER.get(x[1], 9), x[0]))
    edges = sorted((e for e in topo.edges if needle in e.src.lower() or needle in e.dst.lower()),
                   key=lambda e: (e.src, e.dst, e.source.value))
    return ctx.page("topology.html", graph=Markup(graph), topo=topo, services=services[:TABLE_ROWS],
                    services_total=len(services), edges=edges[:TABLE_ROWS], edges_total=len(edges),
                    edge_count=len(topo.edges), node_count=len(health), drawn=len(focus) if focus else len(health),
                    q=q.strip(), inv_id=inv_id, top=top, problems=problems)


# -- sources and integrations ---------------------------------------------------------------------
_SECRET_WORDS = ("token", "secret", "password", "key", "credential", "auth")


def _describe(config: dict[str, Any]) -> list[tuple[str, str]]:
    """A source's settings for display: references to secrets are shown as references, never values."""
    out = []
    for k, v in sorted(config.items()):
        if isinstance(v, dict) and set(v) <= {"env", "file"}:
            out.append((k, "from " + ", ".join(f"{a} {b}" for a, b in v.items())))
        elif any(w in k.lower() for w in _SECRET_WORDS):
            out.append((k, "(set)" if v else "(empty)"))
        else:
            text = str(v)
            out.append((k, text if len(text) <= 120 else text[:117] + "…"))
    return out


@router.get("/s/{space}/sources")
def sources_page(request: Request, space: SpacePath):
    ctx = _ctx(request, space)
    rt = _rt(request)
    status = rt.services.telemetry.source_status()
    rows = []
    for s in rt.services.sources.list(space):
        check = s.get("last_check") or status.get((space, s["name"]))
        rows.append({"name": s["name"], "kind": s["kind"], "config": _describe(s.get("config") or {}),
                     "created_at": s.get("created_at"), "check": _check(check)})
    extent = rt.services.telemetry.extent(space)
    embedded = {"counts": rt.services.telemetry.counts(space),
                "extent": [datetime.fromtimestamp(x, UTC) for x in extent] if extent else None}
    integrations = rt.services.integrations.list(space) if ctx.token.role.allows(Role.ADMIN) else None
    return ctx.page("sources.html", rows=rows, embedded=embedded, integrations=integrations,
                    mcp=[r for r in rows if r["kind"] == "mcp"])


def _check(c: dict[str, Any] | None) -> dict[str, Any] | None:
    if not c:
        return None
    at = c.get("at")
    if isinstance(at, int | float):
        at = datetime.fromtimestamp(at, UTC)
    elif isinstance(at, str):
        try:
            at = datetime.fromisoformat(at)
        except ValueError:
            at = None
    return {"ok": bool(c.get("ok")), "at": at, "message": str(c.get("message") or "")[:300]}



# -- respond: mitigation, actions, chat, the post-incident report; the prevention backlog ------------
def _chat_log(journal: list) -> list[dict[str, Any]]:
    return [e.data["chat"] | {"seq": e.seq, "ts": e.ts} for e in journal
            if isinstance(e.data, dict) and isinstance(e.data.get("chat"), dict)]


@router.get("/s/{space}/investigations/{inv_id}/respond")
def respond_page(request: Request, space: SpacePath, inv_id: IdPath):
    ctx = _ctx(request, space)
    rt = _rt(request)
    inv = rt.services.investigations.get(space, inv_id)
    svc = rt.respond
    specs = svc.specs(space, inv_id, 3)
    enabled = svc.enabled_actions(space)
    actions = svc.actions(space, inv_id)
    proposed = {(a["kind"], a["args_hash"]) for a in actions}
    from vigil.respond.actions import args_hash
    journal = rt.services.investigations.journal(space, inv_id)
    return ctx.page("respond.html", inv=inv, specs=specs, actions=actions, enabled=enabled,
                    already=lambda ref: (ref.kind, args_hash(ref.kind, ref.args)) in proposed,
                    chat=_chat_log(journal), json=json)


@router.post("/s/{space}/investigations/{inv_id}/actions")
async def propose_action(request: Request, space: SpacePath, inv_id: IdPath):
    ctx = _ctx(request, space)
    form = await _form(request, ctx)
    try:
        args = json.loads(form.get("args") or "{}")
    except ValueError:
        raise InputError("the action's arguments are not JSON") from None
    if not isinstance(args, dict):
        raise InputError("the action's arguments must be an object")
    await run_in_threadpool(_rt(request).respond.propose, space, inv_id, form.get("kind", "")[:40], args, ctx.actor,
                            form.get("hypothesis_id", "")[:80])
    return _back(f"/ui/s/{space}/investigations/{inv_id}/respond#actions")


@router.post("/s/{space}/actions/{action_id}/approve")
async def approve_action(request: Request, space: SpacePath, action_id: IdPath):
    """A person's click in the console is the approval: the token it mints is used at once, once."""
    ctx = _ctx(request, space)
    await _form(request, ctx)
    a = await run_in_threadpool(_rt(request).respond.approve_and_run, space, action_id, ctx.actor)
    return _back(f"/ui/s/{space}/investigations/{a['investigation_id']}/respond#action-{action_id}")


@router.post("/s/{space}/investigations/{inv_id}/chat")
async def chat(request: Request, space: SpacePath, inv_id: IdPath):
    ctx = _ctx(request, space)
    form = await _form(request, ctx, need=Role.VIEWER)
    q = (form.get("question") or "").strip()
    if not q or len(q) > 500:
        raise InputError("ask a question of 1 to 500 characters")
    await run_in_threadpool(_rt(request).respond.ask, space, inv_id, q, ctx.actor, ctx.can_act)
    return _back(f"/ui/s/{space}/investigations/{inv_id}/respond#chat")


@router.get("/s/{space}/investigations/{inv_id}/postmortem")
def postmortem_download(request: Request, space: SpacePath, inv_id: IdPath,
                        format: Annotated[str, Query(pattern="^(md|html|pdf)$")] = "html"):  # noqa: A002
    ctx = _ctx(request, space)
    from vigil.api import routes_respond
    resp = routes_respond.get_postmortem(request, space, inv_id, ctx.principal, format)
    resp.headers["Content-Disposition"] = f'attachment; filename="postmortem-{inv_id}.{format}"'
    return resp


@router.get("/s/{space}/prevention")
def prevention_page(request: Request, space: SpacePath):
    ctx = _ctx(request, space)
    items = _rt(request).respond.backlog(space)
    return ctx.page("prevention.html", items=items, statuses=["open", "planned", "done", "dismissed"])


@router.post("/s/{space}/prevention/refresh")
async def prevention_refresh(request: Request, space: SpacePath):
    ctx = _ctx(request, space)
    await _form(request, ctx)
    from vigil.respond import prevention
    await run_in_threadpool(prevention.refresh, _rt(request).respond, space, ctx.actor)
    return _back(f"/ui/s/{space}/prevention")


@router.post("/s/{space}/prevention/{item_id}")
async def prevention_status(request: Request, space: SpacePath, item_id: IdPath):
    ctx = _ctx(request, space)
    form = await _form(request, ctx)
    status = form.get("status", "")
    if status not in ("open", "planned", "done", "dismissed"):
        raise InputError("status is one of open, planned, done, dismissed")
    note = (form.get("note") or "").strip()[:2000] or None
    await run_in_threadpool(_rt(request).respond.set_backlog_status, space, item_id, status, note, ctx.actor)
    return _back(f"/ui/s/{space}/prevention#item-{item_id}")

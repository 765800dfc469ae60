"""Incidents, investigations, the journal (REST and live SSE), hypotheses and reports."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from vigil.api.auth import IdPath, Operator, SpacePath, Viewer
from vigil.api.errors import ERROR_RESPONSES
from vigil.api.middleware import REPORT_CSP
from vigil.api.schemas import InvestigationView, JobView, JudgeIn, ManualStart, NoteIn
from vigil.model import (
    Hypothesis,
    HypothesisState,
    Incident,
    IncidentStatus,
    InvestigationStatus,
    JournalEntry,
)

router = APIRouter(prefix="/v1/spaces/{space}", responses=ERROR_RESPONSES)
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
SSE_POLL_S = 0.1          # how often a stream checks the in-process change feed
SSE_REREAD_S = 2.0        # and re-reads the database regardless (changes made by other processes)
SSE_PING_S = 15.0


def _rt(request: Request):
    return request.app.state.runtime


def _svc(request: Request):
    return request.app.state.runtime.services


def _view(request: Request, inv) -> InvestigationView:
    job = _svc(request).investigations.job(inv.space_id, inv.id)
    return InvestigationView(**inv.model_dump(), job=JobView(**job) if job else None)


# -- incidents ------------------------------------------------------------------------------------
@router.get("/incidents", response_model=list[Incident], tags=["incidents"])
def list_incidents(request: Request, space: SpacePath, who: Viewer, status: IncidentStatus | None = None,
                   limit: Limit = 50, offset: Offset = 0):
    return _svc(request).alerts.incidents(space, status, limit, offset)


@router.get("/incidents/{incident_id}", response_model=Incident, tags=["incidents"],
            summary="An incident with its alerts (fingerprints, receipts, status)")
def get_incident(request: Request, space: SpacePath, incident_id: IdPath, who: Viewer):
    return _svc(request).alerts.incident(space, incident_id)


# -- investigations -------------------------------------------------------------------------------
@router.get("/investigations", response_model=list[InvestigationView], tags=["investigations"])
def list_investigations(request: Request, space: SpacePath, who: Viewer, status: InvestigationStatus | None = None,
                        limit: Limit = 50, offset: Offset = 0):
    return [_view(request, i) for i in _svc(request).investigations.list(space, status, limit, offset)]


@router.post("/investigations", response_model=InvestigationView, status_code=202, tags=["investigations"],
             summary="Start an investigation by hand: latest alarm, high CPU, error-rate spike or free text")
def start_investigation(request: Request, space: SpacePath, body: ManualStart, who: Operator):
    inv = _svc(request).investigations.start_manual(space, body.starting_point, body.start, body.end, body.at,
                                                    body.text, who.actor)
    return _view(request, inv)


@router.get("/investigations/{inv_id}", response_model=InvestigationView, tags=["investigations"])
def get_investigation(request: Request, space: SpacePath, inv_id: IdPath, who: Viewer):
    return _view(request, _svc(request).investigations.get(space, inv_id))


@router.post("/investigations/{inv_id}/cancel", response_model=InvestigationView, status_code=202,
             tags=["investigations"])
def cancel_investigation(request: Request, space: SpacePath, inv_id: IdPath, who: Operator):
    return _view(request, _svc(request).investigations.cancel(space, inv_id, who.actor))


@router.get("/investigations/{inv_id}/journal", response_model=list[JournalEntry], tags=["investigations"])
def get_journal(request: Request, space: SpacePath, inv_id: IdPath, who: Viewer,
                after: Annotated[int, Query(ge=0, le=10_000_000, description="Only entries after this seq.")] = 0):
    return _svc(request).investigations.journal(space, inv_id, after_seq=after)


def _event(kind: str, data, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, default=str)}\n\n".encode()


@router.get("/investigations/{inv_id}/events", tags=["investigations"],
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "Server-Sent Events: journal, hypotheses, status, end"}},
            summary="Live journal: the investigation's journal entries and hypothesis updates as Server-Sent "
                    "Events (resumes after Last-Event-ID; ends when the investigation has finished)")
async def journal_events(request: Request, space: SpacePath, inv_id: IdPath, who: Viewer,
                         after: Annotated[int, Query(ge=0, le=10_000_000)] = 0):
    rt = _rt(request)
    invs = rt.services.investigations
    await run_in_threadpool(invs.get, space, inv_id)      # 404 before the stream starts
    last = request.headers.get("last-event-id", "")
    start_seq = int(last) if last.isdigit() and len(last) < 10 else after

    def _read(after_seq: int, hyp_sig):
        # the hypotheses (with their evidence) only when their signature changed: a stream re-reads every
        # few seconds, and a storm has many streams open
        return invs.snapshot(space, inv_id, after_seq, hyp_sig)

    async def stream():
        seq, status, hyp_sig = start_seq, None, None
        seen_version, last_read, last_send = -1, 0.0, time.monotonic()
        yield b": vigil live journal\n\n"
        while True:
            version = rt.feed.version(inv_id)
            now = time.monotonic()
            if version != seen_version or now - last_read >= SSE_REREAD_S:
                seen_version, last_read = version, now
                # the status first: once it reads finished, the journal read after it holds every step
                inv, entries, sig, hyps = await run_in_threadpool(_read, seq, hyp_sig)
                for e in entries:
                    yield _event("journal", e.model_dump(mode="json"), e.seq)
                    seq, last_send = e.seq, now
                if hyps is not None:
                    hyp_sig = sig
                    if hyps:
                        yield _event("hypotheses", [h.model_dump(mode="json") for h in hyps])
                        last_send = now
                if inv.status != status:
                    status = inv.status
                    yield _event("status", {"status": status.value, "summary": inv.summary, "error": inv.error})
                    last_send = now
                if status.finished:     # read before the journal: the entries just sent hold every step
                    yield _event("end", {"status": status.value, "summary": inv.summary})
                    return
            if now - last_send >= SSE_PING_S:
                last_send = now
                yield b": ping\n\n"
            await asyncio.sleep(SSE_POLL_S)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# -- hypotheses -----------------------------------------------------------------------------------
@router.get("/investigations/{inv_id}/hypotheses", response_model=list[Hypothesis], tags=["hypotheses"])
def get_hypotheses(request: Request, space: SpacePath, inv_id: IdPath, who: Viewer):
    return _svc(request).investigations.hypotheses(space, inv_id)


@router.post("/investigations/{inv_id}/hypotheses/{hyp_id}/accept", response_model=Hypothesis, tags=["hypotheses"])
def accept_hypothesis(request: Request, space: SpacePath, inv_id: IdPath, hyp_id: IdPath, who: Operator,
                      body: JudgeIn | None = None):
    return _svc(request).investigations.judge(space, inv_id, hyp_id, who.actor, HypothesisState.ACCEPTED,
                                              body.note if body else None)


@router.post("/investigations/{inv_id}/hypotheses/{hyp_id}/discard", response_model=Hypothesis,
             tags=["hypotheses"])
def discard_hypothesis(request: Request, space: SpacePath, inv_id: IdPath, hyp_id: IdPath, who: Operator,
                       body: JudgeIn | None = None):
    return _svc(request).investigations.judge(space, inv_id, hyp_id, who.actor, HypothesisState.DISCARDED,
                                              body.note if body else None)


@router.post("/investigations/{inv_id}/hypotheses/{hyp_id}/note", response_model=Hypothesis, tags=["hypotheses"])
def note_hypothesis(request: Request, space: SpacePath, inv_id: IdPath, hyp_id: IdPath, body: NoteIn,
                    who: Operator):
    return _svc(request).investigations.judge(space, inv_id, hyp_id, who.actor, None, body.note)


# -- reports --------------------------------------------------------------------------------------
_MEDIA = {"md": "text/markdown; charset=utf-8", "json": "application/json", "html": "text/html; charset=utf-8"}


@router.get("/investigations/{inv_id}/report", tags=["reports"],
            responses={200: {"content": {m.split(";")[0]: {} for m in _MEDIA.values()}}},
            summary="The investigation's report: Markdown, JSON or self-contained HTML")
def get_report(request: Request, space: SpacePath, inv_id: IdPath, who: Viewer,
               format: Literal["md", "json", "html"] = "md"):  # noqa: A002 - the query parameter's name
    text = _svc(request).investigations.report(space, inv_id, format)
    resp = Response(text, media_type=_MEDIA[format])
    if format == "html":            # self-contained: its inline style and SVG, no script, nothing fetched
        resp.headers["Content-Security-Policy"] = REPORT_CSP
    return resp

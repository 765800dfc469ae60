"""Persistence for respond and prevent: settings, directed actions and approvals, the outbox, notifier
threads, the prevention backlog, skills. Each write that records a decision writes its audit entry (and,
for an investigation, its journal entry) in the same transaction as the change.

Built over a ``StateStore``'s engine (same database, same migrations)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vigil.errors import InputError, NotFound
from vigil.model import JournalKind
from vigil.store.state import StateStore, new_id
from vigil.store.tables import (
    ActionRow,
    ApprovalRow,
    AuditRow,
    BacklogRow,
    InvestigationRow,
    JournalRow,
    OutboxRow,
    RespondSettingRow,
    SkillRow,
    ThreadRow,
)


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class Refused(InputError):
    """An approval token that is unknown, used, expired or bound to something else (HTTP 409)."""

    status = 409


class RespondStore:
    def __init__(self, state: StateStore) -> None:
        self.state = state

    def session(self) -> Session:
        return self.state.session()

    # -- shared helpers (inside an open transaction) ------------------------------------------------
    @staticmethod
    def audit(s: Session, actor: str, action: str, space_id: str, target: str = "",
              detail: dict[str, Any] | None = None) -> None:
        s.add(AuditRow(ts=_now(), actor=actor[:200], action=action, space_id=space_id, target=target[:200],
                       detail=detail or {}))

    @staticmethod
    def journal(s: Session, inv_id: str, kind: JournalKind, message: str, source: str = "",
                data: dict[str, Any] | None = None) -> int:
        if s.get(InvestigationRow, inv_id, with_for_update=True) is None:
            raise NotFound(f"no investigation {inv_id!r}")
        seq = (s.scalar(select(func.max(JournalRow.seq)).where(JournalRow.investigation_id == inv_id)) or 0) + 1
        s.add(JournalRow(investigation_id=inv_id, seq=seq, ts=_now(), kind=kind.value, message=message,
                         source=source[:200], query="", rows=None, data=data or {}))
        return seq

    # -- settings -------------------------------------------------------------------------------------
    def put_setting(self, space: str, area: str, kind: str, enabled: bool, config: dict[str, Any],
                    actor: str) -> dict[str, Any]:
        with self.session() as s, s.begin():
            row = s.get(RespondSettingRow, (space, area, kind))
            if row is None:
                row = RespondSettingRow(space_id=space, area=area, kind=kind)
                s.add(row)
            row.enabled, row.config, row.updated_at = enabled, config, _now()
            self.audit(s, actor, f"{area}-setting", space, kind, {"enabled": enabled, "fields": sorted(config)})
        return self.get_setting(space, area, kind)

    @staticmethod
    def _setting(r: RespondSettingRow) -> dict[str, Any]:
        return {"kind": r.kind, "area": r.area, "enabled": r.enabled, "config": r.config or {},
                "updated_at": _utc(r.updated_at)}

    def get_setting(self, space: str, area: str, kind: str) -> dict[str, Any] | None:
        with self.session() as s:
            r = s.get(RespondSettingRow, (space, area, kind))
            return self._setting(r) if r else None

    def list_settings(self, space: str, area: str | None = None) -> list[dict[str, Any]]:
        q = select(RespondSettingRow).where(RespondSettingRow.space_id == space)
        if area:
            q = q.where(RespondSettingRow.area == area)
        with self.session() as s:
            return [self._setting(r) for r in s.scalars(q.order_by(RespondSettingRow.area, RespondSettingRow.kind))]

    def enabled_settings(self, area: str) -> list[dict[str, Any]]:
        """The settings turned on in every space (the outbox dispatcher's view)."""
        with self.session() as s:
            rows = s.scalars(select(RespondSettingRow).where(RespondSettingRow.area == area,
                                                             RespondSettingRow.enabled.is_(True))).all()
            return [{**self._setting(r), "space_id": r.space_id} for r in rows]

    def delete_setting(self, space: str, area: str, kind: str, actor: str) -> None:
        with self.session() as s, s.begin():
            r = s.get(RespondSettingRow, (space, area, kind))
            if r is None:
                raise NotFound(f"no {area} setting {kind!r}")
            s.delete(r)
            self.audit(s, actor, f"{area}-setting-delete", space, kind)

    # -- actions --------------------------------------------------------------------------------------
    @staticmethod
    def _action(r: ActionRow) -> dict[str, Any]:
        return {"id": r.id, "space_id": r.space_id, "investigation_id": r.investigation_id,
                "hypothesis_id": r.hypothesis_id, "kind": r.kind, "args": r.args, "args_hash": r.args_hash,
                "summary": r.summary, "status": r.status, "proposed_by": r.proposed_by,
                "approved_by": r.approved_by, "created_at": _utc(r.created_at), "approved_at": _utc(r.approved_at),
                "started_at": _utc(r.started_at), "finished_at": _utc(r.finished_at), "result": r.result or {},
                "verify": r.verify or {}, "recovery": r.recovery or {}, "error": r.error}

    def propose(self, space: str, inv_id: str, hyp_id: str, kind: str, args: dict[str, Any], args_hash: str,
                summary: str, verify: dict[str, Any], actor: str) -> dict[str, Any]:
        with self.session() as s, s.begin():
            inv = s.get(InvestigationRow, inv_id)
            if inv is None or inv.space_id != space:
                raise NotFound(f"no investigation {inv_id!r}")
            same = s.scalar(select(ActionRow).where(ActionRow.investigation_id == inv_id, ActionRow.kind == kind,
                                                    ActionRow.args_hash == args_hash,
                                                    ActionRow.status.in_(("proposed", "approved", "queued",
                                                                          "running"))))
            if same is not None:                 # the same action proposed twice is one proposal
                return self._action(same)
            row = ActionRow(id=new_id("act"), space_id=space, investigation_id=inv_id, hypothesis_id=hyp_id,
                            kind=kind, args=args, args_hash=args_hash, summary=summary, status="proposed",
                            proposed_by=actor[:200], approved_by="", created_at=_now(), result={}, verify=verify,
                            recovery={}, error="")
            s.add(row)
            s.flush()
            self.journal(s, inv_id, JournalKind.NOTE, f"action proposed by {actor}: {summary}", actor,
                         {"action": row.id, "kind": kind, "args": args})
            self.audit(s, actor, "action-propose", space, row.id, {"kind": kind, "args_hash": args_hash})
            return self._action(row)

    def get_action(self, action_id: str, space: str | None = None) -> dict[str, Any]:
        with self.session() as s:
            r = s.get(ActionRow, action_id)
            if r is None or (space is not None and r.space_id != space):
                raise NotFound(f"no action {action_id!r}")
            return self._action(r)

    def list_actions(self, space: str, inv_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        q = select(ActionRow).where(ActionRow.space_id == space)
        if inv_id:
            q = q.where(ActionRow.investigation_id == inv_id)
        with self.session() as s:
            return [self._action(r) for r in s.scalars(q.order_by(ActionRow.created_at.desc()).limit(limit))]

    def approve(self, action_id: str, space: str, actor: str, ttl_s: float) -> tuple[str, dict[str, Any]]:
        """Mark a proposed action approved and mint its single-use token (returned once; stored hashed),
        bound to the action, its kind, its exact arguments and its investigation."""
        token = "vat_" + secrets.token_urlsafe(32)
        with self.session() as s, s.begin():
            r = s.get(ActionRow, action_id, with_for_update=True)
            if r is None or r.space_id != space:
                raise NotFound(f"no action {action_id!r}")
            if r.status != "proposed":
                raise Refused(f"action {action_id} is already {r.status}: an approval is given once")
            now = _now()
            r.status, r.approved_by, r.approved_at = "approved", actor[:200], now
            s.add(ApprovalRow(id=new_id("apv"), action_id=r.id, space_id=space, investigation_id=r.investigation_id,
                              kind=r.kind, args_hash=r.args_hash, token_hash=token_hash(token), approved_by=actor[:200],
                              created_at=now, expires_at=now + timedelta(seconds=ttl_s), used_by=""))
            self.journal(s, r.investigation_id, JournalKind.NOTE, f"action approved by {actor}: {r.summary} "
                         f"(single-use approval, valid {ttl_s:g} s)", actor, {"action": r.id, "kind": r.kind})
            self.audit(s, actor, "action-approve", space, r.id, {"kind": r.kind, "args_hash": r.args_hash,
                                                                  "ttl_s": ttl_s})
            return token, self._action(r)

    def consume(self, token: str, action_id: str, space: str, kind: str, args_hash: str, inv_id: str,
                actor: str, queue: bool = False, job: dict[str, Any] | None = None) -> dict[str, Any]:
        """Use an approval token once: one atomic UPDATE that matches only an unused, unexpired token bound
        to exactly this action, kind, argument hash and investigation; a replay (here or in another server
        process on the same database) matches nothing and is refused. The action becomes ``running``, or
        ``queued`` (``queue``: the server's durable job runner starts it, see ``start_queued``). ``job``
        (``notifier``, ``event``, ``payload``, ``key``, ``lease_s``) is its durable job, written in the same
        transaction: leased for ``lease_s`` when this process runs the action now (if it dies mid-run, the
        lease lapses and the job runner finds the action interrupted), unleased when it is queued."""
        now = _now()
        job_id = None
        with self.session() as s, s.begin():
            res = s.execute(update(ApprovalRow).where(
                ApprovalRow.token_hash == token_hash(token), ApprovalRow.used_at.is_(None),
                ApprovalRow.expires_at > now, ApprovalRow.action_id == action_id, ApprovalRow.space_id == space,
                ApprovalRow.kind == kind, ApprovalRow.args_hash == args_hash,
                ApprovalRow.investigation_id == inv_id).values(used_at=now, used_by=actor[:200]))
            if res.rowcount != 1:
                raise Refused(self._why_refused(s, token, action_id, kind, args_hash, now))
            moved = s.execute(update(ActionRow).where(ActionRow.id == action_id, ActionRow.status == "approved")
                              .values(status="queued" if queue else "running", started_at=None if queue else now))
            if moved.rowcount != 1:
                raise Refused(f"action {action_id} is not waiting to run")
            self.audit(s, actor, "action-run", space, action_id, {"kind": kind, "args_hash": args_hash,
                                                                   **({"queued": True} if queue else {})})
            if job is not None:
                lease = job.get("lease_s")
                row = OutboxRow(space_id=space, investigation_id=inv_id, notifier=job["notifier"], event=job["event"],
                                payload=job["payload"], dedup_key=str(job["key"])[:300], status="pending", attempts=0,
                                next_at=now, claimed_until=now + timedelta(seconds=lease) if lease else None,
                                last_error="", created_at=now, result={})
                s.add(row)
                s.flush()
                job_id = row.id
        return self.get_action(action_id) | ({"job_id": job_id} if job_id is not None else {})

    def start_queued(self, action_id: str) -> bool:
        """Move a queued action to ``running`` (one atomic UPDATE: of two job runners, one starts it)."""
        with self.session() as s, s.begin():
            moved = s.execute(update(ActionRow).where(ActionRow.id == action_id, ActionRow.status == "queued")
                              .values(status="running", started_at=_now()))
            return moved.rowcount == 1

    @staticmethod
    def _why_refused(s: Session, token: str, action_id: str, kind: str, args_hash: str, now: datetime) -> str:
        a = s.scalar(select(ApprovalRow).where(ApprovalRow.token_hash == token_hash(token)))
        if a is None:
            return "the approval token is not valid"
        if a.used_at is not None:
            return "the approval token was already used: an approval runs its action once"
        if _utc(a.expires_at) <= now:
            return "the approval token has expired: approve the action again"
        if a.action_id != action_id or a.kind != kind or a.args_hash != args_hash:
            return "the approval token was given for another action or other arguments"
        return "the approval token does not match this action"

    def finish(self, action_id: str, ok: bool, result: dict[str, Any], error: str, actor: str) -> dict[str, Any]:
        with self.session() as s, s.begin():
            r = s.get(ActionRow, action_id, with_for_update=True)
            if r is None:
                raise NotFound(f"no action {action_id!r}")
            r.status, r.result, r.error, r.finished_at = ("succeeded" if ok else "failed"), result, error, _now()
            msg = f"action {'succeeded' if ok else 'failed'}: {r.summary}" + (f": {error}" if error else "") + \
                  (f" ({result.get('message')})" if ok and result.get("message") else "")
            self.journal(s, r.investigation_id, JournalKind.NOTE if ok else JournalKind.WARNING, msg, actor,
                         {"action": r.id, "kind": r.kind, "result": result, "ok": ok})
            self.audit(s, actor, "action-result", r.space_id, r.id, {"ok": ok, "error": error[:300]})
            return self._action(r)

    def record_recovery(self, action_id: str, recovery: dict[str, Any]) -> dict[str, Any]:
        with self.session() as s, s.begin():
            r = s.get(ActionRow, action_id, with_for_update=True)
            if r is None:
                raise NotFound(f"no action {action_id!r}")
            r.recovery = recovery
            self.journal(s, r.investigation_id, JournalKind.NOTE if recovery.get("recovered") else JournalKind.WARNING,
                         f"recovery check after {r.summary}: {recovery.get('message', '')}", "vigil",
                         {"action": r.id, "recovery": recovery})
            self.audit(s, "vigil", "action-verify", r.space_id, r.id, {"recovered": bool(recovery.get("recovered"))})
            return self._action(r)

    # -- outbox ---------------------------------------------------------------------------------------
    @staticmethod
    def _out(r: OutboxRow) -> dict[str, Any]:
        return {"id": r.id, "space_id": r.space_id, "investigation_id": r.investigation_id, "notifier": r.notifier,
                "event": r.event, "payload": r.payload or {}, "status": r.status, "attempts": r.attempts,
                "next_at": _utc(r.next_at), "last_error": r.last_error, "created_at": _utc(r.created_at),
                "sent_at": _utc(r.sent_at), "result": r.result or {}, "dedup_key": r.dedup_key}

    def enqueue(self, space: str, inv_id: str | None, notifier: str, event: str, payload: dict[str, Any],
                dedup_key: str, delay_s: float = 0.0) -> bool:
        """Queue one update (due after ``delay_s``); the same ``dedup_key`` twice is queued once. Returns
        whether it was new."""
        try:
            with self.session() as s, s.begin():
                now = _now()
                s.add(OutboxRow(space_id=space, investigation_id=inv_id, notifier=notifier, event=event,
                                payload=payload, dedup_key=dedup_key[:300], status="pending", attempts=0,
                                next_at=now + timedelta(seconds=max(0.0, delay_s)),
                                last_error="", created_at=now, result={}))
        except IntegrityError:
            return False
        return True

    def queued_keys(self, keys: list[str]) -> set[str]:
        """Which of these dedup keys the outbox already holds."""
        if not keys:
            return set()
        with self.session() as s:
            return set(s.scalars(select(OutboxRow.dedup_key).where(OutboxRow.dedup_key.in_([k[:300] for k in keys]))))

    def claim(self, owner_lease_s: float = 60.0, limit: int = 20, only: tuple[str, ...] = (),
              exclude: tuple[str, ...] = (), ordered: bool = True) -> list[dict[str, Any]]:
        """Due pending updates, leased so that another dispatcher (process) does not send them too. Updates
        of one investigation and notifier go in order (``ordered``): a later one waits for the earlier.
        ``only`` / ``exclude`` pick items by notifier (the durable respond jobs share the table)."""
        now = _now()
        out = []
        with self.session() as s, s.begin():
            q = select(OutboxRow).where(OutboxRow.status == "pending", OutboxRow.next_at <= now,
                                        or_(OutboxRow.claimed_until.is_(None), OutboxRow.claimed_until < now))
            if only:
                q = q.where(OutboxRow.notifier.in_(only))
            if exclude:
                q = q.where(OutboxRow.notifier.not_in(exclude))
            rows = s.scalars(q.order_by(OutboxRow.id).limit(limit * 4)).all()
            blocked: set[tuple[str | None, str]] = set()
            for r in rows:
                key = (r.investigation_id, r.notifier) if ordered else (str(r.id), r.notifier)
                earlier = s.scalar(select(func.count()).select_from(OutboxRow).where(
                    OutboxRow.investigation_id == r.investigation_id, OutboxRow.notifier == r.notifier,
                    OutboxRow.status == "pending", OutboxRow.id < r.id)) if r.investigation_id and ordered else 0
                if key in blocked or earlier:
                    blocked.add(key)
                    continue
                blocked.add(key)
                # the database compares (SQLite hands back naive times, which Python cannot compare
                # with ``now``: a lapsed lease made this raise)
                got = s.execute(update(OutboxRow).where(OutboxRow.id == r.id, or_(
                    OutboxRow.claimed_until.is_(None), OutboxRow.claimed_until < now))
                    .values(claimed_until=now + timedelta(seconds=owner_lease_s))
                    .execution_options(synchronize_session=False))
                if got.rowcount == 1:
                    out.append(self._out(r))
                if len(out) >= limit:
                    break
        return out

    def sent(self, item_id: int, result: dict[str, Any]) -> None:
        with self.session() as s, s.begin():
            s.execute(update(OutboxRow).where(OutboxRow.id == item_id).values(
                status="sent", sent_at=_now(), result=result, claimed_until=None,
                attempts=OutboxRow.attempts + 1, last_error=""))

    def failed(self, item_id: int, error: str, retry_in_s: float | None) -> None:
        """Record a failed delivery: retried after ``retry_in_s``, or dead (``None``)."""
        with self.session() as s, s.begin():
            s.execute(update(OutboxRow).where(OutboxRow.id == item_id).values(
                status="pending" if retry_in_s is not None else "dead", last_error=error[:500], claimed_until=None,
                attempts=OutboxRow.attempts + 1,
                next_at=_now() + timedelta(seconds=retry_in_s or 0.0)))

    def outbox(self, space: str | None = None, inv_id: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        q = select(OutboxRow)
        if space:
            q = q.where(OutboxRow.space_id == space)
        if inv_id:
            q = q.where(OutboxRow.investigation_id == inv_id)
        with self.session() as s:
            return [self._out(r) for r in s.scalars(q.order_by(OutboxRow.id).limit(limit))]

    def next_due(self) -> datetime | None:
        with self.session() as s:
            return _utc(s.scalar(select(func.min(OutboxRow.next_at)).where(OutboxRow.status == "pending")))

    # -- threads --------------------------------------------------------------------------------------
    def thread(self, inv_id: str, notifier: str) -> dict[str, Any] | None:
        with self.session() as s:
            r = s.get(ThreadRow, (inv_id, notifier))
            return dict(r.ref or {}) if r else None

    def set_thread(self, space: str, inv_id: str, notifier: str, ref: dict[str, Any]) -> dict[str, Any]:
        """The first writer wins: a thread, once opened, is where every later update goes."""
        try:
            with self.session() as s, s.begin():
                s.add(ThreadRow(investigation_id=inv_id, notifier=notifier, space_id=space, ref=ref,
                                created_at=_now()))
        except IntegrityError:
            pass
        return self.thread(inv_id, notifier) or ref

    def find_thread(self, notifier: str, **match: str) -> tuple[str, str, dict[str, Any]] | None:
        """(space, investigation, ref) of the thread whose ref has these values (a Slack reply's channel
        and thread ts)."""
        with self.session() as s:
            for r in s.scalars(select(ThreadRow).where(ThreadRow.notifier == notifier)):
                ref = r.ref or {}
                if all(str(ref.get(k)) == str(v) for k, v in match.items()):
                    return r.space_id, r.investigation_id, dict(ref)
        return None

    # -- backlog --------------------------------------------------------------------------------------
    @staticmethod
    def _item(r: BacklogRow) -> dict[str, Any]:
        return {"id": r.id, "space_id": r.space_id, "key": r.key, "category": r.category, "title": r.title,
                "detail": r.detail, "severity": r.severity, "likelihood": r.likelihood,
                "detectability": r.detectability, "score": r.score, "status": r.status, "note": r.note,
                "investigations": r.investigations or [], "created_at": _utc(r.created_at),
                "updated_at": _utc(r.updated_at)}

    def upsert_backlog(self, space: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Store found items by key: new ones open; known ones keep their status and note (what people
        decided), with fresh figures."""
        with self.session() as s, s.begin():
            now = _now()
            for it in items:
                r = s.scalar(select(BacklogRow).where(BacklogRow.space_id == space, BacklogRow.key == it["key"]))
                if r is None:
                    r = BacklogRow(id=new_id("bkl"), space_id=space, key=it["key"], status="open", note="",
                                   created_at=now)
                    s.add(r)
                for f in ("category", "title", "detail", "severity", "likelihood", "detectability", "score",
                          "investigations"):
                    setattr(r, f, it[f])
                r.updated_at = now
        return self.backlog(space)

    def backlog(self, space: str, status: str | None = None) -> list[dict[str, Any]]:
        q = select(BacklogRow).where(BacklogRow.space_id == space)
        if status:
            q = q.where(BacklogRow.status == status)
        with self.session() as s:
            return [self._item(r) for r in s.scalars(q.order_by(BacklogRow.score.desc(), BacklogRow.key))]

    def set_backlog_status(self, space: str, item_id: str, status: str, note: str | None, actor: str) -> dict:
        with self.session() as s, s.begin():
            r = s.get(BacklogRow, item_id)
            if r is None or r.space_id != space:
                raise NotFound(f"no backlog item {item_id!r}")
            r.status, r.updated_at = status, _now()
            if note is not None:
                r.note = note
            self.audit(s, actor, "backlog-status", space, item_id, {"status": status})
            return self._item(r)

    # -- skills ---------------------------------------------------------------------------------------
    @staticmethod
    def _skill(r: SkillRow) -> dict[str, Any]:
        return {"name": r.name, "title": r.title, "body": r.body, "match": r.match or {}, "always": r.always,
                "updated_at": _utc(r.updated_at)}

    def put_skill(self, space: str, name: str, title: str, body: str, match: dict[str, Any], always: bool,
                  actor: str) -> dict[str, Any]:
        with self.session() as s, s.begin():
            r = s.get(SkillRow, (space, name))
            if r is None:
                r = SkillRow(space_id=space, name=name)
                s.add(r)
            r.title, r.body, r.match, r.always, r.updated_at = title, body, match, always, _now()
            self.audit(s, actor, "skill-put", space, name, {"always": always})
            return self._skill(r)

    def skills(self, space: str) -> list[dict[str, Any]]:
        with self.session() as s:
            return [self._skill(r) for r in s.scalars(select(SkillRow).where(SkillRow.space_id == space)
                                                       .order_by(SkillRow.name))]

    def delete_skill(self, space: str, name: str, actor: str) -> None:
        with self.session() as s, s.begin():
            r = s.get(SkillRow, (space, name))
            if r is None:
                raise NotFound(f"no skill {name!r}")
            s.delete(r)
            self.audit(s, actor, "skill-delete", space, name)


__all__ = ["RespondStore", "Refused", "token_hash"]

"""The respond application service: one place for each respond action, used by the API, the console,
Slack, MCP and chat alike (mitigation specs, action settings, propose / approve / run / verify, chat,
prevention, skills). Decisions are journaled and audited in the same transaction as the change
(``store.respond``); outgoing updates go through the durable outbox (``respond.notify``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from vigil.errors import InputError, NotFound
from vigil.model import HypothesisState, Investigation, Role
from vigil.respond import actions, jobs, notify
from vigil.respond import skills as skill_mod
from vigil.respond.actions import ActionContext, ActionError
from vigil.respond.cause import from_journal
from vigil.respond.spec import MitigationSpec, Verify, build
from vigil.respond.verify import check, wait_for_recovery
from vigil.store.respond import RespondStore

log = logging.getLogger("vigil.respond")
APPROVAL_TTL_S = 300.0


class Forbidden(InputError):
    status = 403


class RespondService:
    def __init__(self, state: Any, sources: Any, approval_ttl_s: float = APPROVAL_TTL_S,
                 start_linked: Callable[..., Investigation] | None = None, wake: Callable[[], None] | None = None,
                 touch: Callable[[str], None] | None = None, judge: Callable[..., Any] | None = None) -> None:
        """``start_linked(space, parent, steering, actor)`` starts a steered rerun (the runtime's);
        ``wake`` nudges the outbox dispatcher; ``touch(inv_id)`` wakes live journal streams."""
        self.state = state
        self.sources = sources
        self.store = RespondStore(state)
        self.ttl = approval_ttl_s
        self.start_linked = start_linked
        self.wake = wake or (lambda: None)
        self.touch = touch or (lambda _inv: None)
        self.judge = judge

    # -- mitigation specs --------------------------------------------------------------------------
    def specs(self, space: str, inv_id: str, limit: int = 3) -> list[MitigationSpec]:
        inv = self.state.get_investigation(inv_id, space_id=space)
        hyps = [h for h in self.state.hypotheses(inv.id) if h.state is not HypothesisState.DISCARDED]
        causes = from_journal(self.state.journal(inv.id))
        skills = self.store.skills(space)
        labels = inv.trigger.alert.labels if inv.trigger.alert else {}
        text = skill_mod.instructions(skills)
        enabled = {s["kind"] for s in self.store.list_settings(space, "action") if s["enabled"]}
        return [build(h, investigation_id=inv.id, cause=causes.get(h.resource),
                      runbooks=skill_mod.runbooks_for(skills, h, labels), instructions=text, enabled=enabled)
                for h in hyps[:limit]]

    # -- action settings ---------------------------------------------------------------------------
    def set_action(self, space: str, kind: str, enabled: bool, config: dict[str, Any], actor: str,
                   guard: bool = True) -> dict[str, Any]:
        """Turn an action kind on or off for a space, with its config (validated; over the API, guarded so a
        space admin cannot reach the Vigil host's secrets or files)."""
        self.state.get_space(space)
        act = actions.build(kind, config)
        if guard:
            act.guard()
        return self.store.put_setting(space, "action", kind, enabled, act.config.model_dump(mode="json",
                                                                                           exclude_none=True), actor)

    def action_settings(self, space: str) -> list[dict[str, Any]]:
        self.state.get_space(space)
        have = {s["kind"]: s for s in self.store.list_settings(space, "action")}
        return [{"kind": k, "title": cls.title, "enabled": bool(have.get(k, {}).get("enabled")),
                 "configured": k in have, "config": _public(have[k]["config"]) if k in have else {}}
                for k, cls in actions.ACTIONS.items()]

    def _action(self, space: str, kind: str) -> actions.Action:
        s = self.store.get_setting(space, "action", kind)
        if s is None or not s["enabled"]:
            raise Forbidden(f"action {kind!r} is off in space {space!r}: a space admin turns it on "
                            f"(PUT /v1/spaces/{space}/action-settings/{kind})")
        return actions.build(kind, s["config"])

    # -- propose, approve, run ---------------------------------------------------------------------
    def propose(self, space: str, inv_id: str, kind: str, args: dict[str, Any], actor: str,
                hypothesis_id: str = "", publish: bool = True) -> dict[str, Any]:
        inv = self.state.get_investigation(inv_id, space_id=space)
        act = self._action(space, kind)
        parsed = actions.parse_args(kind, args)
        act.check_args(parsed)
        hyps = [h for h in self.state.hypotheses(inv.id) if h.state is not HypothesisState.DISCARDED]
        h = next((x for x in hyps if x.id == hypothesis_id), None) if hypothesis_id else (hyps[0] if hyps else None)
        if hypothesis_id and h is None:
            raise NotFound(f"no hypothesis {hypothesis_id!r} in investigation {inv_id!r}")
        verify: dict[str, Any] = {}
        if h is not None:
            spec = next((s for s in self.specs(space, inv.id, 10) if s.hypothesis_id == h.id), None)
            if spec is not None:
                verify = spec.verify.model_copy(update={"for_s": act.config.verify_for_s}).model_dump(mode="json")
        a = self.store.propose(space, inv.id, h.id if h else "", kind, parsed.model_dump(mode="json"),
                               actions.args_hash(kind, parsed), act.describe(parsed), verify, actor)
        self.touch(inv.id)
        if publish:
            self._publish(space, inv.id, "action", a, f"proposed:{a['id']}")
        return a

    def propose_from_specs(self, space: str, inv_id: str, specs: list[MitigationSpec]) -> list[dict[str, Any]]:
        """Vigil proposes the leading spec's actions whose kind the space turned on (a proposal runs
        nothing: a person approves it)."""
        out = []
        for spec in specs[:1]:
            for ref in spec.actions:
                try:
                    out.append(self.propose(space, inv_id, ref.kind, ref.args, "vigil", spec.hypothesis_id,
                                            publish=False))
                except (InputError, NotFound) as exc:
                    log.info("not proposing %s: %s", ref.kind, exc)
        return out

    def approve(self, space: str, action_id: str, actor: str) -> tuple[str, dict[str, Any]]:
        a = self.store.get_action(action_id, space)
        self._action(space, a["kind"])                  # still on
        token, a = self.store.approve(action_id, space, actor, self.ttl)
        self.touch(a["investigation_id"])
        self._publish(space, a["investigation_id"], "action", a, f"approved:{a['id']}")
        return token, a

    def run(self, space: str, action_id: str, token: str, actor: str, verify_async: bool = True) -> dict[str, Any]:
        """Run an approved action now with its single-use token (the API's second step). Its recovery check
        is a durable job (``respond.jobs``) unless ``verify_async`` is off (then checked once, now)."""
        a = self.store.get_action(action_id, space)
        act = self._action(space, a["kind"])
        parsed = self._parsed(a)
        a = self.store.consume(token, action_id, space, a["kind"], a["args_hash"], a["investigation_id"], actor,
                               job=self._job(a, jobs.RUN_LEASE_S))
        job_id = a.pop("job_id", None)
        out = self._execute(a, act, parsed, actor, verify_async)
        if job_id is not None:                   # ran here: the job that would have found it interrupted is done
            self.store.sent(job_id, {"ran": True, "here": True})
        return out

    @staticmethod
    def _job(a: dict[str, Any], lease_s: float | None) -> dict[str, Any]:
        return {"notifier": jobs.ACTION, "event": "run", "key": f"{jobs.ACTION}:{a['id']}", "lease_s": lease_s,
                "payload": {"action_id": a["id"], "title": f"run {a['summary']}"[:300]}}

    @staticmethod
    def _parsed(a: dict[str, Any]) -> actions.ActionArgs:
        parsed = actions.parse_args(a["kind"], a["args"])
        if actions.args_hash(a["kind"], parsed) != a["args_hash"]:
            raise InputError("the stored arguments do not match their approval")
        return parsed

    def _execute(self, a: dict[str, Any], act: actions.Action, parsed: actions.ActionArgs, actor: str,
                 verify_async: bool = True) -> dict[str, Any]:
        """Run a ``running`` action, record its result, post it, and check recovery."""
        action_id, space = a["id"], a["space_id"]
        inv = self.state.get_investigation(a["investigation_id"])
        causes = from_journal(self.state.journal(inv.id))
        cause = next(iter(causes.values()), None)
        ctx = ActionContext(space=space, investigation_id=inv.id, action_id=a["id"], approved_by=a["approved_by"],
                            summary=inv.summary, cause=cause.statement if cause else "")
        try:
            result = act.run(parsed, ctx)
            a = self.store.finish(action_id, result.ok, {"message": result.message, **result.detail}, "", actor)
        except ActionError as exc:
            a = self.store.finish(action_id, False, {}, " ".join(str(exc).split())[:300], actor)
        except Exception as exc:   # noqa: BLE001 - an action's bug must not leave it "running"
            log.exception("action %s failed", action_id)
            a = self.store.finish(action_id, False, {}, f"internal error ({type(exc).__name__})", actor)
        self.touch(inv.id)
        self._publish(space, inv.id, "action", a, f"result:{a['id']}")
        if a["status"] == "succeeded" and a["verify"]:
            if verify_async:
                self.schedule_check(a, act.config.verify_timeout_s)
            else:
                a = self.verify(action_id, wait=False)
        return a

    def approve_and_run(self, space: str, action_id: str, actor: str, verify_async: bool = True) -> dict[str, Any]:
        """One person's click in the console: the approval mints the token and the run uses it, now."""
        token, _ = self.approve(space, action_id, actor)
        return self.run(space, action_id, token, actor, verify_async)

    def approve_and_queue(self, space: str, action_id: str, actor: str) -> dict[str, Any]:
        """One person's click where the answer cannot wait for the action (Slack wants one within 3 s): the
        approval mints the token, which is used at once to queue the action; the server's job runner runs it
        (``respond.jobs``), also after a restart. A replayed click finds the action approved already."""
        token, a = self.approve(space, action_id, actor)
        self._parsed(a)
        a = self.store.consume(token, action_id, space, a["kind"], a["args_hash"], a["investigation_id"], actor,
                               queue=True, job=self._job(a, None))
        a.pop("job_id", None)
        self.wake()
        return a

    def run_queued(self, action_id: str) -> dict[str, Any]:
        """The job runner's part of ``approve_and_queue``: start the queued action once and run it. Found
        ``running`` instead, the process that ran it stopped mid-run: it is marked failed, not run again."""
        a = self.store.get_action(action_id)
        if a["status"] == "running":
            a = self.store.finish(action_id, False, {}, "interrupted: the server stopped while the action ran; "
                                  "its effect is unknown, so check the system before approving it again", "vigil")
            self.touch(a["investigation_id"])
            self._publish(a["space_id"], a["investigation_id"], "action", a, f"result:{a['id']}")
            return a
        if a["status"] != "queued" or not self.store.start_queued(action_id):
            return a
        a = self.store.get_action(action_id)
        try:
            act = self._action(a["space_id"], a["kind"])
            parsed = self._parsed(a)
        except InputError as exc:
            a = self.store.finish(action_id, False, {}, " ".join(str(exc).split())[:300], "vigil")
            self.touch(a["investigation_id"])
            self._publish(a["space_id"], a["investigation_id"], "action", a, f"result:{a['id']}")
            return a
        return self._execute(a, act, parsed, a["approved_by"])

    def schedule_check(self, a: dict[str, Any], timeout_s: float) -> None:
        """The recovery check as a durable job, due once the verify step's window holds only post-action data."""
        v = Verify.model_validate(a["verify"])
        now = datetime.now(UTC)
        until = now.timestamp() + max(timeout_s, v.for_s)
        due = now.timestamp() + v.for_s
        self.store.enqueue(a["space_id"], a["investigation_id"], jobs.VERIFY, "verify",
                           {"action_id": a["id"], "until": until, "title": f"recovery check after {a['summary']}"[:300]},
                           f"{jobs.VERIFY}:{a['id']}", delay_s=v.for_s)
        self.store_journal_note(a["investigation_id"], f"recovery check of {a['summary']} due at "
                                f"{datetime.fromtimestamp(due, UTC):%H:%M:%S}Z: {v.series} of {v.resource} "
                                f"{v.comparison} {v.threshold:g} over {v.for_s:g} s (checked until "
                                f"{datetime.fromtimestamp(until, UTC):%H:%M:%S}Z)", "vigil",
                                {"action": a["id"], "due": due, "until": until})
        self.wake()

    def check_recovery(self, action_id: str, until: float, now: float | None = None) -> dict[str, Any]:
        """One evaluation of a scheduled recovery check. ``final``: recovered, or out of time (then the
        answer is recorded, journaled and posted); otherwise it is checked again later."""
        a = self.store.get_action(action_id)
        if a["recovery"]:                       # recorded already (a job run twice)
            return {**a["recovery"], "final": True}
        v = Verify.model_validate(a["verify"])
        t = now if now is not None else datetime.now(UTC).timestamp()
        rec = check(v, self.sources, a["space_id"], t)
        if not rec["recovered"] and t < until:
            return {**rec, "final": False}
        rec["checked_at"] = datetime.now(UTC).isoformat()
        a = self.store.record_recovery(action_id, rec)
        self.touch(a["investigation_id"])
        self._publish(a["space_id"], a["investigation_id"], "recovery", a, f"recovery:{a['id']}")
        return {**rec, "final": True}

    def verify(self, action_id: str, wait: bool = False, timeout_s: float = 600.0) -> dict[str, Any]:
        a = self.store.get_action(action_id)
        v = Verify.model_validate(a["verify"])
        rec = wait_for_recovery(v, self.sources, a["space_id"], timeout_s) if wait else \
            check(v, self.sources, a["space_id"])
        rec["checked_at"] = datetime.now(UTC).isoformat()
        a = self.store.record_recovery(action_id, rec)
        self.touch(a["investigation_id"])
        self._publish(a["space_id"], a["investigation_id"], "recovery", a, f"recovery:{a['id']}")
        return a

    # -- reads and small writes the interfaces need (so they never touch the store) ---------------------
    def enabled_actions(self, space: str) -> set[str]:
        return {s["kind"] for s in self.store.list_settings(space, "action") if s["enabled"]}

    def actions(self, space: str, inv_id: str | None = None) -> list[dict[str, Any]]:
        if inv_id is not None:
            self.state.get_investigation(inv_id, space_id=space)
        return self.store.list_actions(space, inv_id)

    def action(self, space: str, action_id: str) -> dict[str, Any]:
        return self.store.get_action(action_id, space)

    def outbox(self, space: str, inv_id: str | None = None) -> list[dict[str, Any]]:
        return self.store.outbox(space, inv_id)

    def backlog(self, space: str, status: str | None = None) -> list[dict[str, Any]]:
        self.state.get_space(space)
        return self.store.backlog(space, status)

    def set_backlog_status(self, space: str, item_id: str, status: str, note: str | None, actor: str) -> dict:
        return self.store.set_backlog_status(space, item_id, status, note, actor)

    def skills(self, space: str) -> list[dict[str, Any]]:
        self.state.get_space(space)
        return self.store.skills(space)

    def put_skill(self, space: str, name: str, title: str, body: str, match: dict[str, Any], always: bool,
                  actor: str) -> dict[str, Any]:
        self.state.get_space(space)
        return self.store.put_skill(space, name, title, body, match, always, actor)

    def delete_skill(self, space: str, name: str, actor: str) -> None:
        self.store.delete_skill(space, name, actor)

    # -- chat, reruns, notes ------------------------------------------------------------------------
    def ask(self, space: str, inv_id: str, question: str, actor: str, can_act: bool):
        from vigil.respond.chat import Chat
        return Chat(self).ask(space, inv_id, question, actor, can_act)

    def rerun(self, space: str, inv_id: str, focus: list[str], exclude: list[str], actor: str) -> Investigation:
        """A linked investigation of the same window, steered; both journals record it."""
        from vigil.model import Steering
        if self.start_linked is None:
            raise InputError("reruns need the live server")
        parent = self.state.get_investigation(inv_id, space_id=space)
        steering = Steering(focus=focus, exclude=exclude, parent=parent.id, by=actor)
        new = self.start_linked(space, parent, steering, actor)
        what = ("focus on " + ", ".join(focus) if focus else "") + ("; " if focus and exclude else "") + \
            ("exclude " + ", ".join(exclude) if exclude else "")
        self.store_journal_note(parent.id, f"{actor} started a rerun ({what}): investigation {new.id}", actor,
                                {"rerun": new.id, "steering": steering.model_dump(mode="json")})
        self.touch(parent.id)
        return new

    def store_audit(self, space: str, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
        with self.store.session() as s, s.begin():
            self.store.audit(s, actor, action, space, target, detail)

    def store_journal_note(self, inv_id: str, message: str, actor: str, data: dict[str, Any]) -> None:
        from vigil.model import JournalKind
        with self.store.session() as s, s.begin():
            self.store.journal(s, inv_id, JournalKind.NOTE, message, actor, data)
        self.touch(inv_id)

    # -- notifications -----------------------------------------------------------------------------
    def set_notifier(self, space: str, kind: str, enabled: bool, config: dict[str, Any], actor: str,
                     guard: bool = True) -> dict[str, Any]:
        self.state.get_space(space)
        n = notify.build(kind, config)
        if guard:
            n.guard()
        return self.store.put_setting(space, "notify", kind, enabled, n.config.model_dump(mode="json",
                                                                                         exclude_none=True), actor)

    def set_model(self, space: str, enabled: bool, config: dict[str, Any], actor: str,
                  guard: bool = True) -> dict[str, Any]:
        from pydantic import ValidationError

        from vigil.respond.chat import ModelConfig
        from vigil.respond.notify.base import guard_secrets
        self.state.get_space(space)
        try:
            cfg = ModelConfig.model_validate(config)
        except ValidationError as exc:
            e = exc.errors()[0]
            raise InputError(f"model config: {'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}") from None
        except ValueError as exc:
            raise InputError(f"model config: {' '.join(str(exc).split())[:200]}") from None
        if guard:
            guard_secrets(cfg.api_key)
        return self.store.put_setting(space, "model", "openai", enabled, cfg.model_dump(mode="json", exclude_none=True),
                                      actor)

    def notifier_settings(self, space: str) -> list[dict[str, Any]]:
        self.state.get_space(space)
        have = {s["kind"]: s for s in self.store.list_settings(space, "notify")}
        return [{"kind": k, "title": cls.title, "enabled": bool(have.get(k, {}).get("enabled")),
                 "configured": k in have, "config": _public(have[k]["config"]) if k in have else {}}
                for k, cls in notify.NOTIFIERS.items()]

    def _publish(self, space: str, inv_id: str, event: str, data: dict[str, Any], key: str) -> int:
        n = notify.publish(self, space, inv_id, event, data, key)
        if n:
            self.wake()
        return n

    def publish_conclusion(self, inv: Investigation) -> int:
        """Queue the conclusion (with the mitigation specs) for every notifier the space turned on."""
        if not inv.status.finished:
            return 0
        return self._publish(inv.space_id, inv.id, "conclusion", {"status": inv.status.value}, f"conclusion:{inv.id}")

    def roles_for(self, space: str, notifier: str, user: str) -> Role | None:
        s = self.store.get_setting(space, "notify", notifier)
        if s is None:
            return None
        cfg = s["config"]
        if user in (cfg.get("approvers") or []):
            return Role.OPERATOR
        if user in (cfg.get("viewers") or []) or cfg.get("everyone_views"):
            return Role.VIEWER
        return None


def _public(config: dict[str, Any]) -> dict[str, Any]:
    """A config as shown back: credential references by name (never a value: none is stored)."""
    return config

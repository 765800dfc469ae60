"""A space and its sources declared in one YAML file (``vigil space apply FILE``)::

    space: shop
    description: the web shop
    sources:
      - name: prom
        kind: prometheus
        config: {url: http://127.0.0.1:9090, token: {env: PROM_TOKEN}}
      - name: repo
        kind: git
        config: {path: /srv/shop-deploy}

Applying is all-or-nothing: every source is validated, then (unless told not to) every backend is
checked, and only when all pass are the space, its sources and the audit entry written, in one transaction.
Sources already in the space but not in the file are kept, unless ``prune`` is asked for."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vigil.errors import InputError, NotFound
from vigil.model import AgentSpace
from vigil.sources import registry
from vigil.sources.connector import first_error

NAME = r"^[a-z0-9][a-z0-9_.-]{0,62}$"


class SourceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    kind: str = Field(min_length=1, max_length=30)
    config: dict[str, Any] = Field(default_factory=dict)


class SpaceFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    space: str = Field(pattern=NAME)
    description: str | None = Field(default=None, max_length=2000)
    services: list[str] | None = Field(default=None, max_length=1000)
    sources: list[SourceSpec] = Field(default_factory=list, max_length=200)


def load(path: Path) -> SpaceFile:
    """Read and validate the file; any problem is one ``InputError`` line."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"{path} is not valid YAML{where}: {getattr(exc, 'problem', None) or 'syntax error'}") \
            from None
    if not isinstance(data, dict):
        raise InputError(f"{path} must hold a mapping with 'space' and 'sources'")
    try:
        spec = SpaceFile.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{path}: {first_error(exc)}") from None
    names = [s.name for s in spec.sources]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"{path}: source {dup[0]!r} is listed more than once")
    if "embedded" in names:
        raise InputError(f"{path}: 'embedded' is the built-in store; choose another source name")
    return spec


@dataclass
class Applied:
    space: str
    created: bool
    sources: list[dict[str, Any]] = field(default_factory=list)
    checks: dict[str, str] = field(default_factory=dict)
    pruned: list[str] = field(default_factory=list)


def apply(state, spec: SpaceFile, *, check: bool = True, prune: bool = False, actor: str = "cli") -> Applied:
    """Create or update the space and its sources; nothing is written unless every source passes. The
    space, its sources and the audit entry are written in one transaction (``state.uow()``)."""
    rows = []
    for s in spec.sources:
        try:
            rows.append((s.name, s.kind, registry.normalize(s.kind, s.config)))
        except InputError as exc:
            raise InputError(f"source {s.name!r}: {exc}; nothing was stored") from None
    results: dict[str, registry.CheckResult] = {}
    if check:
        for name, kind, config in rows:
            res = registry.check(name, kind, config)
            if not res.ok:
                raise InputError(f"source {name!r} ({kind}) failed its check: {res.message}; nothing was stored")
            results[name] = res
    with state.uow() as u:
        try:
            current: AgentSpace | None = u.spaces.get(spec.space, lock=True)
        except NotFound:
            current = None
        if current is None:
            u.spaces.put(AgentSpace(id=spec.space, name=spec.space, description=spec.description or "",
                                    services=spec.services or [], sources=["embedded"]))
        elif spec.description is not None or spec.services is not None:
            changes = {k: v for k, v in (("description", spec.description), ("services", spec.services))
                       if v is not None}
            u.spaces.put(current.model_copy(update=changes))
        u.flush()
        before = {s["name"] for s in u.sources.list(spec.space)}
        stored = u.sources.put_many(spec.space, [
            (name, kind, config, (results[name].ok, results[name].message) if name in results else None)
            for name, kind, config in rows], prune=prune)
        pruned = sorted(before - {r[0] for r in rows}) if prune else []
        u.audit.add(actor, "space-apply", spec.space, spec.space,
                    {"sources": [r[0] for r in rows], "checked": check, "pruned": pruned,
                     "created": current is None})
    return Applied(spec.space, current is None, stored, {n: r.message for n, r in results.items()}, pruned)

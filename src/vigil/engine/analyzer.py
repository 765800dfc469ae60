"""The one analyzer interface.

An analyzer has a ``name``, the ``family`` its findings are scored in (or ``evidence`` when it only
describes the leading candidates for people), its own ``Config`` (a dataclass of defaults; ``Settings``
can override it by name), says whether it can run on what the observation holds, and turns a
``Prepared`` observation into ``Finding``s. A new analyzer is one module under ``engine/analyzers/`` and
one line in ``engine/registry.py``."""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

from vigil.engine.findings import Finding
from vigil.engine.prepared import Prepared


@runtime_checkable
class Analyzer(Protocol):
    name: ClassVar[str]
    family: ClassVar[str]
    Config: ClassVar[type]

    def missing(self, p: Prepared) -> str | None:
        """Why it cannot run on this observation (e.g. "no spans"), or None when it can."""
        ...

    def analyze(self, p: Prepared, config: Any) -> list[Finding]: ...

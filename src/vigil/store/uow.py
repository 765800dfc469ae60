"""The unit of work: one session, one transaction, every repository over it. A service writes a change
and the audit entry that records it through the same ``UnitOfWork``, so both commit or neither does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from vigil.store.repos import (
    AlertRepo,
    AuditRepo,
    IntegrationRepo,
    InvestigationRepo,
    JobRepo,
    OverviewRepo,
    SourceRepo,
    SpaceRepo,
    TokenRepo,
)


class UnitOfWork:
    def __init__(self, session: Session, sealer: Callable[[], Any] | None = None) -> None:
        """``sealer()``: what encrypts and decrypts stored secrets (``vigil.store.crypto``), read lazily."""
        self.session = session
        self.spaces = SpaceRepo(session)
        self.tokens = TokenRepo(session)
        self.sources = SourceRepo(session)
        self.integrations = IntegrationRepo(session, sealer)
        self.investigations = InvestigationRepo(session)
        self.jobs = JobRepo(session)
        self.alerts = AlertRepo(session)
        self.audit = AuditRepo(session)
        self.overview = OverviewRepo(session)

    def flush(self) -> None:
        self.session.flush()

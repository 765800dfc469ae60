"""One repository per kind of record, each over an open SQLAlchemy session. A ``UnitOfWork``
(``vigil.store.uow``) hands them all the same session, so a service writes a change and its audit entry
in one transaction. Repositories only persist and read: business rules (deduplication, grouping, the
settle wait, who may do what) live in ``vigil.services``."""

from vigil.store.repos.alerts import AlertRepo
from vigil.store.repos.audit import AuditRepo
from vigil.store.repos.integrations import IntegrationRepo
from vigil.store.repos.investigations import InvestigationRepo
from vigil.store.repos.jobs import JobRepo
from vigil.store.repos.overview import OverviewRepo
from vigil.store.repos.sources import SourceRepo
from vigil.store.repos.spaces import SpaceRepo
from vigil.store.repos.tokens import TokenRepo

__all__ = ["AlertRepo", "AuditRepo", "IntegrationRepo", "InvestigationRepo", "JobRepo", "OverviewRepo",
           "SourceRepo", "SpaceRepo", "TokenRepo"]

"""Pure analysis: per-signal anomaly evidence, topology-aware ranking, fault kinds. No I/O here."""

from vigil.engine.observation import Observation, Settings
from vigil.engine.ranking import Analysis, analyze

__all__ = ["Analysis", "Observation", "Settings", "analyze"]

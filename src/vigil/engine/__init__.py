"""Pure analysis: a prepared observation, analyzers in one registry, ranking, fault kinds. No I/O here."""

from vigil.engine.analyzer import Analyzer
from vigil.engine.findings import Finding
from vigil.engine.observation import Observation
from vigil.engine.prepared import Prepared
from vigil.engine.ranking import Analysis, analyze
from vigil.engine.registry import ANALYZERS
from vigil.engine.settings import Ranking, Settings

__all__ = ["ANALYZERS", "Analysis", "Analyzer", "Finding", "Observation", "Prepared", "Ranking", "Settings",
           "analyze"]

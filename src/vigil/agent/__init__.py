"""Investigation orchestration: gather telemetry for a window, run the engine, keep the journal."""

from vigil.agent.investigator import Investigator, observe

__all__ = ["Investigator", "observe"]

"""Importers for recorded incidents (Nezha, PetShop, RCD, RCAEval) and live ingestion."""

from vigil.ingest.base import Case, Label, Recording, discover

__all__ = ["Case", "Label", "Recording", "discover"]

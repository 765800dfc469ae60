"""Vigil: a self-hosted, autonomous on-call agent."""

__version__ = "0.1.0"

"""The HTTP API (FastAPI): REST for spaces, tokens, sources, integrations, incidents,
investigations, hypotheses and reports; the live journal as Server-Sent Events; OTLP/HTTP
ingestion; alert webhooks. Thin over ``vigil.server.Runtime``."""

from vigil.api.app import create_app

__all__ = ["create_app"]

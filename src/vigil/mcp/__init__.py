"""Vigil as an MCP server: tools for an agent (start an investigation, read its status, journal,
hypotheses and recommendations, query telemetry and topology), each scoped to the space of the
caller's token. ``vigil mcp`` serves it over stdio (or HTTP); ``vigil serve`` mounts it at ``/mcp``.

Inside this package the SDK is always imported absolutely (``from mcp.server...``): ``vigil.mcp``
never shadows the top-level ``mcp`` package."""

"""The live server's runtime: the durable investigation queue and its workers, OTLP ingestion,
alert acceptance, the change feed behind the live journal, and the server's own metrics. The HTTP
layer (``vigil.api``) is thin over it (see ``vigil.server.runtime.Runtime``)."""

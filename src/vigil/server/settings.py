"""Server settings: everything has a default, every default is safe (loopback, read-only)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from vigil.errors import InputError

DEFAULT_SNS_CERT_URL = r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[^?#]+\.pem$"


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2                        # investigations run at once
    analysis: str = "process"               # "process": each worker's analysis in its own process; "thread"
    max_attempts: int = 3                   # a job interrupted by crashes this often fails instead of looping
    max_body_bytes: int = 1 << 20           # API bodies
    max_webhook_bytes: int = 8 << 20        # alert webhook bodies
    max_otlp_bytes: int = 16 << 20          # an OTLP request as sent (compressed or not)
    max_otlp_decoded_bytes: int = 64 << 20  # an OTLP request after gunzip
    token_cache_s: float = 2.0              # a token revoked from another process stops working within this
    webhook_tolerance_s: float = 300.0      # signed webhooks older (or newer) than this are replays
    sns_cert_url_regex: str = DEFAULT_SNS_CERT_URL
    sns_cert_timeout_s: float = 5.0
    sns_max_age_s: float = 3600.0           # SNS retries a delivery for at most an hour: older messages are replays
    first_answer_window_s: float = 10.0     # a full analysis waits at most this long behind others' first answers
    outbox_interval_s: float = 1.0          # how often the outbox is looked at (a new update wakes it at once)
    outbox_backoff_s: float = 2.0           # the first retry of a failed delivery; doubles each time (max 5 min)
    ingest_per_space: int = 2               # alert deliveries and OTLP exports of one space worked on at once
    ingest_total: int = 8                   # ... of all spaces (the rest of the thread pool stays for the API)
    ingest_queue: int = 64                  # deliveries of one space waiting for a slot before 503 + Retry-After
    ingest_wait_s: float = 30.0             # the longest a delivery waits for a slot before 503 + Retry-After
    alert_note_interval_s: float = 10.0     # an investigation gets at most one note per outcome this often in a storm
    api_docs: bool = False                  # /docs and /redoc load scripts from a CDN: only when asked for
    broker_url: str = ""                    # scale-out: investigations run on `vigil worker`s fed by this broker
    broker_queue: str = "vigil.investigations"  # one queue per deployment sharing a broker
    job_lease_s: float = 30.0               # scale-out: a worker silent this long is dead; its job is taken over

    @classmethod
    def from_env(cls, **overrides) -> ServerSettings:
        values = dict(
            workers=_int("VIGIL_WORKERS", cls.workers),
            analysis=os.environ.get("VIGIL_ANALYSIS") or cls.analysis,
            max_attempts=_int("VIGIL_MAX_ATTEMPTS", cls.max_attempts),
            max_body_bytes=_int("VIGIL_MAX_BODY_BYTES", cls.max_body_bytes),
            max_webhook_bytes=_int("VIGIL_MAX_WEBHOOK_BYTES", cls.max_webhook_bytes),
            max_otlp_bytes=_int("VIGIL_MAX_OTLP_BYTES", cls.max_otlp_bytes),
            max_otlp_decoded_bytes=_int("VIGIL_MAX_OTLP_DECODED_BYTES", cls.max_otlp_decoded_bytes),
            token_cache_s=_float("VIGIL_TOKEN_CACHE_S", cls.token_cache_s),
            webhook_tolerance_s=_float("VIGIL_WEBHOOK_TOLERANCE_S", cls.webhook_tolerance_s),
            sns_cert_url_regex=os.environ.get("VIGIL_SNS_CERT_URL_REGEX") or cls.sns_cert_url_regex,
            sns_max_age_s=_float("VIGIL_SNS_MAX_AGE_S", cls.sns_max_age_s),
            first_answer_window_s=_float("VIGIL_FIRST_ANSWER_WINDOW_S", cls.first_answer_window_s),
            outbox_interval_s=_float("VIGIL_OUTBOX_INTERVAL_S", cls.outbox_interval_s),
            outbox_backoff_s=_float("VIGIL_OUTBOX_BACKOFF_S", cls.outbox_backoff_s),
            ingest_per_space=_int("VIGIL_SPACE_INGEST_CONCURRENCY", cls.ingest_per_space),
            ingest_total=_int("VIGIL_INGEST_CONCURRENCY", cls.ingest_total),
            ingest_queue=_int("VIGIL_SPACE_INGEST_QUEUE", cls.ingest_queue),
            ingest_wait_s=_float("VIGIL_SPACE_INGEST_WAIT_S", cls.ingest_wait_s),
            alert_note_interval_s=_float("VIGIL_ALERT_NOTE_INTERVAL_S", cls.alert_note_interval_s),
            api_docs=os.environ.get("VIGIL_API_DOCS", "").lower() in ("1", "true", "yes"),
            broker_url=os.environ.get("VIGIL_BROKER_URL", "").strip(),
            broker_queue=os.environ.get("VIGIL_BROKER_QUEUE", "").strip() or cls.broker_queue,
            job_lease_s=_float("VIGIL_JOB_LEASE_S", cls.job_lease_s),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values["analysis"] not in ("process", "thread"):
            raise ValueError("VIGIL_ANALYSIS must be 'process' or 'thread'")
        if values["broker_url"] and not values["broker_url"].startswith(
                ("amqp://", "amqps://", "pyamqp://", "redis://", "rediss://")):
            raise InputError("VIGIL_BROKER_URL must be an amqp:// (RabbitMQ) or redis:// URL")
        if values["job_lease_s"] < 2.0:
            raise InputError("VIGIL_JOB_LEASE_S must be at least 2 seconds")
        return cls(**values)

    @property
    def scaleout(self) -> bool:
        """Investigations run on `vigil worker` processes fed by a broker (``VIGIL_BROKER_URL``)."""
        return bool(self.broker_url)

"""The notifier interface: where an investigation's updates go (a Slack thread, a ticket's notes, an
issue's comments, a signed webhook). A notifier kind is a class with ``kind``, ``Config`` and
``send(message, thread) -> Sent``; registered by one line in ``respond.notify``. Every send goes through
the durable outbox (``store.respond``): retried with backoff when the receiver is away, never lost across
a restart."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

EVENTS = ("conclusion", "action", "recovery", "chat", "report")


class Failure(Exception):
    """A delivery that did not happen; ``retry``: trying later may help (timeouts, 5xx, rate limits)."""

    def __init__(self, message: str, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


class NotifierConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    events: list[str] = Field(default_factory=lambda: list(EVENTS), description=f"Which of {', '.join(EVENTS)}.")
    allow_link_local: bool = False


class Button(BaseModel):
    action_id: str
    text: str
    value: str
    style: str = ""          # primary | danger
    confirm: str = ""        # a confirmation question


class Message(BaseModel):
    """One update, rendered by each notifier in its own format. Texts are plain (each notifier escapes
    them for its markup); ``markdown`` is Vigil's Markdown (already escaped, see ``respond.spec.md``)."""

    event: str
    space: str
    investigation_id: str
    title: str
    text: str = ""
    status: str = ""
    fields: list[tuple[str, str]] = Field(default_factory=list)
    markdown: str = ""
    buttons: list[Button] = Field(default_factory=list)
    incident_hint: dict[str, str] = Field(default_factory=dict)    # e.g. the PagerDuty incident id
    data: dict[str, Any] = Field(default_factory=dict)


class Sent(BaseModel):
    result: dict[str, Any] = Field(default_factory=dict)
    thread: dict[str, Any] | None = None       # set when this send opened the thread


class Notifier:
    kind: ClassVar[str]
    title: ClassVar[str]
    Config: ClassVar[type[NotifierConfig]]

    def __init__(self, config: NotifierConfig) -> None:
        self.config = config

    def guard(self) -> None:
        """Refuse (``InputError``) a config a space admin may not register over the API."""

    def send(self, message: Message, thread: dict[str, Any] | None) -> Sent:
        raise NotImplementedError


def guard_secrets(*refs: Any) -> None:
    """Credential references a space admin names over the API follow the sources' rule
    (``VIGIL_SECRET_ENV_PREFIXES`` / ``VIGIL_SECRET_DIRS``)."""
    from vigil.hostaccess import HostAccess, check_secret_env, check_secret_file
    a = HostAccess.from_env()
    for ref in refs:
        if ref is None:
            continue
        if ref.env is not None:
            check_secret_env(ref.env, access=a)
        if ref.file is not None:
            check_secret_file(ref.file, a)


def secret(ref: Any) -> str:
    try:
        return ref.value()
    except Exception as exc:    # SourceError: a variable not set, a file not readable
        raise Failure(" ".join(str(exc).split())[:200], retry=False) from None

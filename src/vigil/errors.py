"""Errors that interfaces turn into a one-line message and a non-zero exit or a 4xx."""


class VigilError(Exception):
    """A user-facing error: its message is one clear line."""


class InputError(VigilError):
    """Bad input: a missing folder, a malformed file, an unknown format, an empty window."""


class NotFound(VigilError):
    """A named object does not exist (in this space)."""


class Unprocessable(InputError):
    """Well-formed input that cannot be used: a source config that fails its check (HTTP 422)."""

    status = 422

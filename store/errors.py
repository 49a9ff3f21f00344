"""Typed domain errors: what went wrong, in words a user can act on, without any HTTP in them.

Services and the store raise these; the API turns each into one status code in a single exception handler
(``toroid.backend.main``), the CLI prints the message, a worker marks its job failed with it. The message is the
whole answer: it says what is wrong and how to fix it.
"""

from __future__ import annotations


class ToroidError(Exception):
    """Base of the domain errors. ``status`` is the HTTP status the API answers with."""

    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class Invalid(ToroidError, ValueError):
    """The request is well-formed but cannot be honoured as asked (unknown name, option out of range, ...)."""

    status = 422


class NotFound(ToroidError, LookupError):
    """A named record (minimum, job, result, study) does not exist."""

    status = 404


class Unauthorized(ToroidError):
    """The request needs a valid token (sign in, or send ``Authorization: Bearer <token>``)."""

    status = 401


class Forbidden(ToroidError):
    """The caller is known but may not do this (someone else's record)."""

    status = 403


class Conflict(ToroidError):
    """The request clashes with the current state (e.g. the record is in use)."""

    status = 409


class TooLarge(ToroidError):
    """A body or file exceeds a server limit."""

    status = 413


class Unsupported(ToroidError):
    """The body is of a media type the route does not take."""

    status = 415


class Malformed(ToroidError):
    """The body cannot be parsed at all."""

    status = 400


class Unavailable(ToroidError):
    """A component the request needs is down (the message broker, the database)."""

    status = 503


class BrokerUnavailable(Unavailable, RuntimeError):
    """A Celery message could not be published (Redis unreachable); the job was marked failed."""

"""Typed domain errors: what went wrong, in words a user can act on, without any HTTP in them.

Services and the store raise these; the API turns each into one status code in a single exception handler
(``toroid.backend.main``), the CLI prints the message, a worker marks its job failed with it. The message is the
whole answer: it says what is wrong and how to fix it.
"""

from __future__ import annotations


class ToroidError(Exception):
    """Base of the domain errors. ``status`` is the HTTP status the API answers with (a class keyword:
    ``class Invalid(ToroidError, status=422)``)."""

    status = 400

    def __init_subclass__(cls, status: int | None = None, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if status is not None:
            cls.status = status

    def __init__(self, message: str, **extra):
        super().__init__(message)
        self.message = message
        #: JSON-able fields the API adds to its answer beside ``detail`` (e.g. a proposed ``key_map``).
        self.extra = extra

    def __str__(self) -> str:
        return self.message


class Invalid(ToroidError, ValueError, status=422):
    """The request is well-formed but cannot be honoured as asked (unknown name, option out of range, ...)."""


class NotFound(ToroidError, LookupError, status=404):
    """A named record (minimum, job, result, study) does not exist."""


class Unauthorized(ToroidError, status=401):
    """The request needs a valid token (sign in, or send ``Authorization: Bearer <token>``)."""


class Forbidden(ToroidError, status=403):
    """The caller is known but may not do this (someone else's record)."""


class Conflict(ToroidError, status=409):
    """The request clashes with the current state (e.g. the record is in use)."""


class TooLarge(ToroidError, status=413):
    """A body or file exceeds a server limit."""


class Unsupported(ToroidError, status=415):
    """The body is of a media type the route does not take."""


class Malformed(ToroidError, status=400):
    """The body cannot be parsed at all."""


class Unavailable(ToroidError, status=503):
    """A component the request needs is down (the message broker, the database)."""


class BrokerUnavailable(Unavailable, RuntimeError):
    """A Celery message could not be published (Redis unreachable); the job was marked failed."""

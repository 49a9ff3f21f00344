"""Users and their API tokens (docs/operations.md, "Running a shared server").

A token is 32 random bytes (``secrets.token_urlsafe``), shown once when the user is made; the database keeps only
its sha256, so a leaked database does not leak tokens (a random 256-bit token needs no slow hash: there is nothing
to guess). ``TOROID_API_TOKEN``, when set, is the admin token and works without a row.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select

from toroid.store.db import new_session
from toroid.store.errors import Conflict, Forbidden, Invalid, NotFound
from toroid.store.models import User, new_id, utcnow
from toroid.store.settings import get_settings

ROLES = ("user", "admin")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Principal:
    """Who makes a request. ``name`` None with role ``admin``: a server without tokens (everyone may do all);
    role ``anonymous``: no or no valid token on a server that has one."""

    name: str | None
    role: str

    @property
    def anonymous(self) -> bool:
        return self.role == "anonymous"

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    def may_change(self, owner: str | None) -> bool:
        """Whether this principal may delete or cancel a record owned by ``owner``: admins always, users their
        own records only (records without an owner belong to the admins)."""
        return self.admin or (not self.anonymous and owner is not None and owner == self.name)

    def require_owner(self, owner: str | None, what: str) -> None:
        """Forbidden (403) unless this principal may change a record owned by ``owner``."""
        if not self.may_change(owner):
            whose = repr(owner) if owner else "the admins"
            raise Forbidden(f"{what} belongs to {whose}; only its owner or an admin may change it")


OPEN = Principal(None, "admin")
ANONYMOUS = Principal(None, "anonymous")
ADMIN_NAME = "admin"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def authenticate(token: str | None) -> Principal:
    """The principal of a bearer token: the admin token, a user's token, or anonymous. Without a server token
    (``TOROID_API_TOKEN`` unset) authentication is off and everyone is ``OPEN``."""
    settings = get_settings()
    if not settings.api_token:
        return OPEN
    if not token:
        return ANONYMOUS
    if hmac.compare_digest(token.encode(), settings.api_token.encode()):
        return Principal(ADMIN_NAME, "admin")
    digest = hash_token(token)
    with new_session() as session:
        user = session.scalar(select(User).where(User.token_sha256 == digest))
    return Principal(user.name, user.role) if user is not None else ANONYMOUS


def add_user(name: str, role: str = "user") -> tuple[User, str]:
    """Make a user; returns the row and the token (shown once: only its hash is stored)."""
    if not NAME.match(name or "") or name == ADMIN_NAME:
        raise Invalid(f"user name {name!r}: use 1-64 letters, digits, '.', '_' or '-' (and not {ADMIN_NAME!r})")
    if role not in ROLES:
        raise Invalid(f"role {role!r}: choose one of {list(ROLES)}")
    token = secrets.token_urlsafe(32)
    with new_session() as session:
        if session.scalar(select(User.id).where(User.name == name)) is not None:
            raise Conflict(f"a user named {name!r} exists; remove it first (toroid users remove {name})")
        user = User(id=new_id(), name=name, role=role, token_sha256=hash_token(token), created_at=utcnow())
        session.add(user)
        session.commit()
        return user, token


def list_users() -> list[User]:
    with new_session() as session:
        return list(session.scalars(select(User).order_by(User.name)).all())


def remove_user(name: str) -> None:
    """Remove a user: their token stops working at once; what they own stays (admins may remove it)."""
    with new_session() as session:
        user = session.scalar(select(User).where(User.name == name))
        if user is None:
            raise NotFound(f"no user named {name!r}; `toroid users list` shows them")
        session.delete(user)
        session.commit()

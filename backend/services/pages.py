"""Pages of the list routes (minima, jobs, results, studies) and the fingerprints behind their ETags (docs/api.md,
"Lists: pages and cheap polls").

Every list is ordered newest first (``created_at`` descending, then ``id``) and paged by a keyset cursor: the cursor
names the last record of a page, and the next page holds the records strictly after it in that order. Records added
while a client walks the pages are newer than every cursor, so they never shift a later page: a walk sees each
record that existed when it started at most once (and every one that was not deleted meanwhile), unlike an offset,
which would repeat records as new ones push the list down.

A page's fingerprint hashes what its answer is made of: the stored columns of its rows (every column of the table,
so a column added later is covered without a change here) or, where an answer holds values computed at read time
(a job's ``duration_s`` and ``eta_s``), the records themselves; plus the total count and the next cursor (the
answer's headers). The API turns it into a per-user ETag (``toroid.backend.paging``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session

from toroid.store.errors import Invalid

#: The largest page a client may ask for (``limit``).
MAX_LIMIT = 1000
#: The lists and the tag their cursors carry (a cursor of one list is refused by another).
LISTS = {"minima": "m", "jobs": "j", "results": "r", "studies": "s"}
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Cursor:
    """The position after one record: its ``created_at`` and ``id``."""

    created_at: datetime
    id: str


def encode_cursor(listing: str, created_at: datetime, record_id: str) -> str:
    raw = f"{LISTS[listing]}|{created_at.isoformat()}|{record_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(listing: str, text: str | None) -> Cursor | None:
    """The cursor of ``after`` (None: the first page); Invalid (422) saying what is wrong with a malformed one."""
    if text is None:
        return None
    hint = (f"pass the X-Next-Cursor header (or the after= of the Link: rel=\"next\" header) of the previous page of "
            f"GET /api/{listing}, unchanged")
    if len(text) > 200:
        raise Invalid(f"after: the cursor is {len(text)} characters long, more than any cursor of this API; {hint}")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        tag, moment, record_id = raw.split("|")
        created_at = datetime.fromisoformat(moment)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Invalid(f"after: {text[:40]!r} is not a cursor of this API; {hint}") from None
    owner = next((name for name, t in LISTS.items() if t == tag), None)
    if owner is None or not _ID.match(record_id) or created_at.tzinfo is not None:
        raise Invalid(f"after: {text[:40]!r} is not a cursor of this API; {hint}")
    if owner != listing:
        raise Invalid(f"after: this cursor is one of GET /api/{owner}, not of GET /api/{listing}; {hint}")
    return Cursor(created_at, record_id)


@dataclass
class Page:
    """One page of a list: its rows, the total count of the list (its filters, all pages) and the cursor of the
    next page (None on the last)."""

    rows: list[Any]
    total: int
    next_cursor: str | None


def newest_first(model: Any) -> tuple:
    return model.created_at.desc(), model.id


def page_of(session: Session, listing: str, model: Any, query: Select, *, limit: int | None, after: str | None,
            filters: Sequence[Any] = (), columns: bool = False) -> Page:
    """The page of ``query`` (a select of ``model`` rows, or of some of its ``columns``, which must include
    ``created_at`` and ``id``; without order or filters) after the cursor ``after``: at most ``limit`` rows (all when
    None), newest first, with ``filters`` applied to it and to the count."""
    cursor = decode_cursor(listing, after)
    total = int(session.scalar(select(func.count()).select_from(model).where(*filters)) or 0)
    query = query.where(*filters).order_by(*newest_first(model))
    if cursor is not None:
        query = query.where(or_(model.created_at < cursor.created_at,
                                and_(model.created_at == cursor.created_at, model.id > cursor.id)))
    if limit is not None:
        query = query.limit(limit + 1)
    rows = list(session.execute(query).all() if columns else session.scalars(query).all())
    next_cursor = None
    if limit is not None and len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = encode_cursor(listing, last.created_at, last.id)
    return Page(rows, total, next_cursor)


def row_fingerprint(rows: Iterable[Any], *extra: Any) -> str:
    """A hash of ORM rows' stored columns (every column of their table), and of ``extra``."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(repr(tuple(getattr(row, c.key) for c in row.__table__.columns)).encode())
        digest.update(b"\x1e")
    digest.update(repr(extra).encode())
    return digest.hexdigest()


def record_fingerprint(records: Iterable[Any], *extra: Any) -> str:
    """A hash of records (JSON, sorted keys), and of ``extra``: for answers computed at read time."""
    text = json.dumps([list(records), list(extra)], sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()

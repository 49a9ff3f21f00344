"""Tables as CSV text: the writer of the API's table exports (docs/api.md, "Exports").

A spreadsheet opening a CSV runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return)
as a formula, so a minimum named ``=HYPERLINK(...)`` would become a live formula on the reader's machine. Every text
cell that starts so is written with a leading single quote (numbers are written as numbers: ``-0.5`` stays a
number). The full-width forms of those characters are treated the same, since some spreadsheets read them as the
ASCII ones.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any, Literal

#: The forms of a table a GET route serves (``?format=``): its JSON records, or the CSV table.
TableFormat = Literal["json", "csv"]
#: What the ``format`` query says in the OpenAPI page.
FORMAT_DOC = "json (the records) or csv (the table, as a download)"
CSV_MEDIA_TYPE = "text/csv"
#: The first characters that make a spreadsheet read a cell as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def safe_cell(value: Any) -> Any:
    """``value`` as a CSV cell: text that a spreadsheet would run as a formula gets a leading ``'``."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """The table as CSV (``\\n`` line ends, empty cells for None), every text cell passed through ``safe_cell``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([safe_cell(name) for name in header])
    writer.writerows([safe_cell(value) for value in row] for row in rows)
    return out.getvalue()


def attachment(filename: str) -> dict[str, str]:
    """The headers of a download named ``filename`` (a name of our own, never a user's text)."""
    return {"Content-Disposition": f'attachment; filename="{filename}"'}

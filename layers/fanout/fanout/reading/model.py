"""What the reader hands out: rows, what it found out about the file, and its errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class FileFormatError(Exception):
    """The file cannot be a contacts file at all; str(e) is one clear, actionable sentence for a person."""


class LostRows(str):
    """The `error` of a row after which rows of the file went unread or were swallowed into it (gzip data
    cut off, a quote never closed, a JSON array cut off or broken): the rows read cannot account for the
    whole file. The reader goes on as it can; a caller that must not send part of a file (the splitter)
    fails the job when it meets one. It compares and serialises as the plain message it is."""


@dataclass(frozen=True, slots=True)
class RawRow:
    """One row as read from the file, before any validation."""

    number: int  # 1-based data-row number as a person counts rows (first data row = 1, header not counted)
    fields: dict[str, object]  # header -> value (CSV: str; JSON: any JSON value, nested kept as-is)
    error: str | None = None  # set when this row alone is unreadable: it is rejected, the file goes on
    size: int = 0  # bytes (approximately: characters) the row took in the file


# A plain CSV row as read, for a reader asked for cells (`open_rows(..., cells=True)`): (number, cells, size),
# as many cells as the header has columns, each a str, as RawRow would hold them. A row that is not plain (a
# reading error, text the guard repaired) still comes as a RawRow.
TextRow = tuple[int, list[str], int]


# The hot loops build RawRow through its slot descriptors: a frozen dataclass __init__ goes through
# object.__setattr__ per field, which is a quarter of the per-row cost of a CSV file.
_ROW_SLOTS: Any = (
    object.__new__,
    vars(RawRow)["number"].__set__,
    vars(RawRow)["fields"].__set__,
    vars(RawRow)["error"].__set__,
    vars(RawRow)["size"].__set__,
)


@dataclass
class FileInfo:
    """What `open_rows` found out about the file."""

    format: str  # "csv" | "ndjson" | "json-array"
    encoding: str  # "utf-8", "utf-8-sig", "utf-16" (BOM), "utf-16-le"/"utf-16-be" (no BOM), "cp1252"
    compressed: bool  # gzip detected by content (magic bytes 1f 8b), not by name
    delimiter: str | None  # CSV only
    columns: list[str]  # header names as in the file (CSV) or keys seen in the first object (JSON)
    # Where in the file the last row handed out ends (bytes), for a ranged read that goes on from there
    # (`open_rows_at`); None when it cannot be known (gzip, a JSON array, text not UTF-8 as it is).
    position: Callable[[], int | None] = field(default=lambda: None, compare=False, repr=False)

    @property
    def text_rows(self) -> bool:
        """Every row's fields are `columns`, in order, all text (a CSV file): rows are validated faster
        (`plan_some`'s `text_rows`), with the same answers."""
        return self.format == "csv"

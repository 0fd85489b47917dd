"""Loading numeric tables from ``.csv`` / ``.tsv`` / ``.txt`` / ``.npy`` files with precise errors.

Every problem in a text file is reported with its 1-based line number (and column where it applies):
empty rows, a wrong number of columns, text that is not a number, NaN and infinite values. Numbers must be
ASCII decimal (``-1.5e3``): ``1_000``, Arabic-Indic or full-width digits, which Python's ``float`` reads, are
refused. ``.npy`` files are
loaded without pickle and checked the same way (with the 0-based row index).

Example:
    >>> from pathlib import Path
    >>> from pushforward.data.csv import load_table
    >>> _ = Path("data.csv").write_text("a,b\\n1,2\\n3,4\\n")
    >>> x, columns = load_table("data.csv")
    >>> x.shape, columns
    ((2, 2), ['a', 'b'])
"""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

import numpy as np

__all__ = ["DataFileError", "header_line", "load_table", "save_table"]

_MISSING = {"", "na", "n/a", "nan", "null", "none", "?", "-nan", "+nan"}


class DataFileError(ValueError):
    """A data file that cannot be used; the message names the file and the line."""


#: A number as written in ASCII decimal: optional sign, digits with an optional point, optional exponent.
#: Python's ``float`` also reads ``1_000``, Arabic-Indic (``١٢``) and full-width (``１２``) digits and
#: surrounding Unicode spaces; a data file that writes numbers that way is refused, not guessed at.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_INFINITE = {"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}


def _parse(cell: str) -> float:
    """An ASCII decimal number (or an infinity, reported as non-finite by the caller); ``ValueError`` with the
    reason otherwise.

    Example:
        >>> _parse("-1.5e3"), _parse(".5")
        (-1500.0, 0.5)
    """
    c = cell.strip(" \t")
    if _DECIMAL.fullmatch(c) or c.lower() in _INFINITE:
        return float(c)
    try:
        float(c)
    except ValueError:
        raise ValueError(f"{cell!r} is not a number") from None
    raise ValueError(
        f"{cell!r} is not an ASCII decimal number (digit separators '_', non-ASCII digits and other spellings "
        "that Python's float() accepts are refused; write digits 0-9 with '.' as the decimal point)"
    )


def _sniff_delimiter(first: str, path: Path) -> str:
    if path.suffix.lower() == ".tsv" or "\t" in first:
        return "\t"
    if "," in first:
        return ","
    if ";" in first:
        return ";"
    return " "


def _is_header(cells: list[str]) -> bool:
    """A first row is a header when no cell parses as a number (and some cell is non-empty)."""
    non_empty = [c.strip() for c in cells if c.strip()]
    if not non_empty:
        return False
    for c in non_empty:
        try:
            float(c)
            return False
        except ValueError:
            continue
    return True


def _load_text(path: Path, delimiter: str | None, header: bool | None) -> tuple[np.ndarray, list[str] | None]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataFileError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    if "\x00" in text:
        raise DataFileError(f"{path}: contains NUL bytes; is it a binary file?")
    lines = text.splitlines()
    if not lines:
        raise DataFileError(f"{path}: the file is empty")
    delim = delimiter or _sniff_delimiter(lines[0], path)
    rows: list[list[float]] = []
    columns: list[str] | None = None
    width: int | None = None
    for lineno, line in enumerate(lines, start=1):
        if delim == " ":
            cells = line.split()
        else:
            try:
                cells = next(csv.reader([line], delimiter=delim))
            except csv.Error as e:
                raise DataFileError(f"{path}, line {lineno}: {e}") from None
        if not cells or all(not c.strip() for c in cells):
            raise DataFileError(f"{path}, line {lineno}: empty row")
        if lineno == 1 and (header is True or (header is None and _is_header(cells))):
            columns = [c.strip() for c in cells]
            width = len(cells)
            continue
        if width is None:
            width = len(cells)
        elif len(cells) != width:
            raise DataFileError(f"{path}, line {lineno}: expected {width} columns, got {len(cells)}")
        values = []
        for j, cell in enumerate(cells, start=1):
            c = cell.strip()
            if c.lower() in _MISSING:
                raise DataFileError(f"{path}, line {lineno}, column {j}: missing value {cell!r}")
            try:
                v = _parse(c)
            except ValueError as e:
                raise DataFileError(f"{path}, line {lineno}, column {j}: {e}") from None
            if not math.isfinite(v):
                raise DataFileError(f"{path}, line {lineno}, column {j}: non-finite value {cell!r}")
            values.append(v)
        rows.append(values)
    if not rows:
        raise DataFileError(f"{path}: no data rows")
    return np.asarray(rows, dtype=np.float64), columns


def _load_npy(path: Path) -> np.ndarray:
    try:
        a = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise DataFileError(f"{path}: cannot load without pickle ({e}); save a plain numeric array") from None
    except (OSError, EOFError) as e:
        raise DataFileError(f"{path}: not a valid .npy file ({e})") from None
    if not isinstance(a, np.ndarray):
        raise DataFileError(f"{path}: expected one array (a .npy file), got {type(a).__name__}")
    if a.dtype.kind not in "biuf":
        raise DataFileError(f"{path}: expected a numeric array, got dtype {a.dtype}")
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise DataFileError(f"{path}: expected a 2-D array (rows, columns), got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise DataFileError(f"{path}: the array is empty (shape {a.shape})")
    a = a.astype(np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise DataFileError(f"{path}, row {i}, column {j + 1}: non-finite value {a[i, j]!r}")
    return a


def load_table(
    path: str | Path, *, delimiter: str | None = None, header: bool | None = None
) -> tuple[np.ndarray, list[str] | None]:
    """Load a numeric table as a ``float64`` array of shape ``(rows, columns)`` and its column names.

    Args:
        path: A ``.npy`` file (numeric, 1-D or 2-D, loaded without pickle) or a delimited text file.
        delimiter: Column separator; default sniffed from the first line (tab, comma, semicolon, spaces).
        header: Whether the first line holds column names; default: detected (no cell is a number).

    Raises:
        DataFileError: (a ``ValueError``) naming the file and line (1-based) of the first problem.
        FileNotFoundError: The file does not exist.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file")
    if p.is_dir():
        raise DataFileError(f"{p}: is a directory, not a data file")
    if p.suffix.lower() == ".npy":
        return _load_npy(p), None
    return _load_text(p, delimiter, header)


def save_table(path: str | Path, x: np.ndarray, columns: list[str] | None = None) -> None:
    """Write ``x`` as ``.npy`` (by suffix) or as comma-separated text with an optional header."""
    p = Path(path)
    x = np.asarray(x)
    if p.suffix.lower() == ".npy":
        np.save(p, x)
        return
    delim = "\t" if p.suffix.lower() == ".tsv" else ","
    hdr = header_line(columns, delim) if columns else ""
    np.savetxt(p, x, delimiter=delim, header=hdr, comments="", fmt="%.9g")


def header_line(columns: list[str], delimiter: str = ",") -> str:
    """One header line that :func:`load_table` reads back as ``columns``: names holding the delimiter or a
    quote are quoted (RFC 4180), line breaks inside a name become spaces (a header is always one line).

    Example:
        >>> header_line(["a,b", "c"])
        '"a,b",c'
    """
    buf = io.StringIO()
    names = [" ".join(str(c).splitlines()) for c in columns]
    csv.writer(buf, delimiter=delimiter, lineterminator="").writerow(names)
    return buf.getvalue()

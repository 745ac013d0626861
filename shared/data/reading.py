"""Low-level reading: a file (plain or gzip) into a frame of strings, with each row's line
number and the lines the parser could not split, so nothing is lost without a trace.

Text is read as UTF-8 (a BOM is skipped); a file that is not valid UTF-8 is read as Latin-1
(MovieLens 1M's ``movies.dat`` and 100k's ``u.item`` are), which the caller notes in its report.
"""

from __future__ import annotations

import codecs
import gzip
import io
import itertools
import json
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from shared.data.report import BadRow, shorten

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
SNIFF_BYTES = 64 * 1024
_SKIPPED = re.compile(r"Skipping line (\d+): expected (\d+) fields, saw (\d+)")


@dataclass
class RawTable:
    """Rows as strings (missing values are ``""``); ``lines[i]`` is row i's 1-based line."""

    frame: pd.DataFrame
    lines: np.ndarray
    skipped: list[BadRow] = field(default_factory=list)
    skipped_count: int = 0
    encoding: str = "utf-8"
    unit: str = "line"
    skipped_reason: str = "wrong number of fields"


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def is_parquet(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == PARQUET_MAGIC


def open_binary(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


def head_lines(path: Path, n: int = 5) -> list[str]:
    """The first ``n`` non-blank lines (BOM and line endings stripped), for sniffing."""
    with open_binary(path) as fh:
        head = fh.read(SNIFF_BYTES)
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    lines = [line.rstrip("\r") for line in text.split("\n")]
    if len(head) == SNIFF_BYTES:
        lines = lines[:-1]  # the last one may be cut
    return [line for line in lines if line.strip()][:n]


def _encoding(path: Path) -> str:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with open_binary(path) as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return "latin-1"
    return "utf-8-sig"


def line_texts(path: Path, numbers: list[int], encoding: str) -> dict[int, str]:
    """The text of the given 1-based lines (for showing rejected rows)."""
    wanted = set(numbers)
    found: dict[int, str] = {}
    if not wanted:
        return found
    with open_binary(path) as fh:
        for number, raw in enumerate(itertools.islice(fh, max(wanted)), start=1):
            if number in wanted:
                found[number] = shorten(raw.decode(encoding, errors="replace").rstrip("\r\n"))
    return found


def read_delimited(path: Path, sep: str, header: bool, names: list[str] | None = None
                   ) -> RawTable:
    """Read a delimited text file into strings; ``names`` when there is no header.

    ``sep="::"`` (MovieLens 1M/10M) is read as ``:`` with the empty fields in between dropped,
    which keeps pandas' fast C parser.
    """
    encoding = _encoding(path)
    double_colon = sep == "::"
    read_names = names
    if double_colon and names is not None:  # a:b::c → a, "", b, "", c
        read_names = [names[i // 2] if i % 2 == 0 else f"_gap{i}"
                      for i in range(2 * len(names) - 1)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        try:
            frame = pd.read_csv(path, sep=":" if double_colon else sep,
                                header=0 if header else None, names=read_names, dtype=str,
                                keep_default_na=False, skip_blank_lines=False,
                                on_bad_lines="warn", encoding=encoding,
                                compression="gzip" if is_gzip(path) else None)
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise ValueError(f"{path}: cannot be read as {sep!r}-separated text: {exc}") from None
    if double_colon and names is not None:
        frame = frame[names]
    frame.columns = [str(c).strip() for c in frame.columns]
    skipped_lines: list[int] = []
    skipped: list[BadRow] = []
    for warning in caught:
        for match in _SKIPPED.finditer(str(warning.message)):
            line, expected, saw = (int(g) for g in match.groups())
            if double_colon:
                expected, saw = (expected + 1) // 2, (saw + 1) // 2
            skipped_lines.append(line)
            if len(skipped) < 5:
                skipped.append(BadRow(line, f"expected {expected} fields, saw {saw}", ""))
    texts = line_texts(path, [b.line for b in skipped], encoding)
    skipped = [BadRow(b.line, b.reason, texts.get(b.line, "")) for b in skipped]
    first = 2 if header else 1
    all_lines = np.arange(first, first + len(frame) + len(skipped_lines), dtype=np.int64)
    lines = np.setdiff1d(all_lines, np.asarray(skipped_lines, dtype=np.int64), assume_unique=True)
    blank = (frame == "").all(axis=1).to_numpy() if len(frame.columns) else np.zeros(0, bool)
    frame = frame[~blank].reset_index(drop=True)
    return RawTable(frame, lines[~blank], skipped, len(skipped_lines),
                    "latin-1" if encoding == "latin-1" else "utf-8")


def read_double_colon(path: Path, names: list[str]) -> RawTable:
    """``a::b::c`` lines whose text fields may hold single colons (MovieLens ``movies.dat``);
    split in Python, so meant for metadata files, not for ratings."""
    encoding = _encoding(path)
    rows: list[list[str]] = []
    lines: list[int] = []
    skipped: list[BadRow] = []
    count = 0
    for number, text in iter_lines(path, encoding):
        if not text.strip():
            continue
        fields = text.split("::")
        if len(fields) != len(names):
            count += 1
            if len(skipped) < 5:
                skipped.append(BadRow(number, f"expected {len(names)} fields, saw {len(fields)}",
                                      shorten(text)))
            continue
        rows.append(fields)
        lines.append(number)
    frame = pd.DataFrame(rows, columns=names, dtype=str) if rows else pd.DataFrame(
        {name: pd.Series([], dtype=str) for name in names})
    return RawTable(frame, np.asarray(lines, dtype=np.int64), skipped, count,
                    "latin-1" if encoding == "latin-1" else "utf-8")


def read_json_lines(path: Path, keys: list[str]) -> RawTable:
    """JSON lines: one object per line; ``keys`` are kept as strings ("" when absent)."""
    values: dict[str, list[str]] = {key: [] for key in keys}
    lines: list[int] = []
    skipped: list[BadRow] = []
    count = 0
    with open_binary(path) as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError):
                record = None
            if not isinstance(record, dict):
                count += 1
                if len(skipped) < 5:
                    text = shorten(raw.decode("utf-8", errors="replace").strip())
                    skipped.append(BadRow(number, "not a JSON object", text))
                continue
            lines.append(number)
            for key in keys:
                value = record.get(key)
                values[key].append("" if value is None else _json_text(value))
    frame = pd.DataFrame(values, dtype=str) if lines else pd.DataFrame(
        {key: pd.Series([], dtype=str) for key in keys})
    return RawTable(frame, np.asarray(lines, dtype=np.int64), skipped, count,
                    skipped_reason="not a JSON object")


def _json_text(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value)


def json_keys(path: Path) -> list[str]:
    """Keys of the first JSON object in a JSON-lines file (for sniffing)."""
    for line in head_lines(path, 3):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            return list(record)
    return []


def read_parquet(path: Path, columns: list[str]) -> RawTable:
    """The given columns of a Parquet file as strings; ``lines`` are 1-based row numbers."""
    try:
        frame = pd.read_parquet(path, columns=columns)
    except ImportError as exc:
        raise ValueError(f"{path}: reading Parquet needs pyarrow ({exc})") from None
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    text = pd.DataFrame({c: _as_text(frame[c]) for c in columns})
    return RawTable(text, np.arange(1, len(text) + 1, dtype=np.int64), unit="row")


def parquet_columns(path: Path) -> list[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ValueError(f"{path}: reading Parquet needs pyarrow ({exc})") from None
    return list(pq.read_schema(path).names)


def _as_text(column: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(column):
        ms = column.astype("int64") // 1_000_000 if column.dt.tz is None else (
            column.dt.tz_convert("UTC").dt.tz_localize(None).astype("int64") // 1_000_000)
        return ms.astype(str).where(column.notna(), "")
    if pd.api.types.is_float_dtype(column):
        # ids stored as floats (1.0) read back as integers; real fractions stay as they are
        whole = column.notna() & (column == np.floor(column.fillna(0)))
        text = column.astype(str)
        text[whole] = column[whole].astype("int64").astype(str)
        return text.where(column.notna(), "")
    return column.astype(str).where(column.notna(), "")


def iter_lines(path: Path, encoding: str = "utf-8-sig") -> Iterator[tuple[int, str]]:
    """(1-based number, text) for every line of a text file, line endings stripped."""
    with open_binary(path) as fh:
        for number, raw in enumerate(fh, start=1):
            yield number, raw.decode(encoding, errors="replace").rstrip("\r\n")

"""Helpers shared by the dataset readers: CSV loading with checks, absolute paths, missing-file policy."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from monai_bsnet.errors import CXRInputError

#: What a reader does with an entry whose file is absent: refuse the dataset, or leave the entry out.
MISSING_POLICIES = ("error", "skip")


def absolute(path: str | os.PathLike) -> Path:
    """``path`` made absolute (``~`` expanded, ``..`` folded) without resolving symbolic links."""
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    """Refuse a keyword argument outside its documented choices (a caller's bug, hence ValueError)."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def csv_line(index: int) -> int:
    """The line of a CSV file that holds data row ``index`` (line 1 is the header)."""
    return int(index) + 2


def read_table(path: Path, required: Iterable[str], what: str) -> pd.DataFrame:
    """Read a CSV file as text, every cell a string (blank cells ``""``), with its columns checked.

    Reading as text keeps what the file says: Brixia score strings keep their leading zeros and
    identifiers stay identifiers. Semicolon-separated files (some BrixIA releases) are recognised
    from the header line.

    Args:
        path: the CSV file.
        required: column names that must be present.
        what: what the file should be, for the error message ("a lungseg manifest").

    Returns:
        The table, index 0..n-1 in file order, column names stripped of surrounding blanks.

    Raises:
        CXRInputError: the file is absent, unreadable or lacks a required column.
    """
    if not path.is_file():
        raise CXRInputError(path, f"no such file: expected {what}")
    try:
        with open(path, encoding="utf-8-sig") as f:
            header = f.readline()
        sep = ";" if header.count(";") > header.count(",") else ","
        table = pd.read_csv(path, dtype=str, keep_default_na=False, sep=sep, encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise CXRInputError(path, f"cannot read {what}: {e}") from e
    table.columns = [str(c).strip() for c in table.columns]
    absent = [c for c in required if c not in table.columns]
    if absent:
        raise CXRInputError(path, f"not {what}: missing column(s) {absent}; found {list(table.columns)}")
    return table.reset_index(drop=True)


def check_unique(table: pd.DataFrame, column: str, path: Path) -> None:
    """Refuse a table that lists one file twice (it would be counted, split and scored twice)."""
    repeated = table.loc[table[column].duplicated(), column].unique().tolist()
    if repeated:
        raise CXRInputError(path, f"{len(repeated)} {column} value(s) listed more than once: {preview(repeated)}")


def apply_missing_policy(items: list[dict[str, Any]], keys: Sequence[str], missing: str, listed_in: Path) -> list[dict[str, Any]]:
    """Keep the items whose files (``item[key]`` for each key) all exist, as ``missing`` says.

    Args:
        items: datalist items holding absolute paths under ``keys``.
        keys: the item keys that name files ("image", "mask").
        missing: ``"error"`` raises if any file is absent, ``"skip"`` drops the items that lack one.
        listed_in: the file or folder that listed them, for the message.

    Raises:
        CXRInputError: with ``missing="error"``; names the absent file (the first few, if several).
    """
    check_choice("missing", missing, MISSING_POLICIES)
    absent = [(item, item[k]) for item in items for k in keys if not os.path.isfile(item[k])]
    if not absent:
        return items
    if missing == "skip":
        dropped = {id(item) for item, _ in absent}
        return [item for item in items if id(item) not in dropped]
    paths = [p for _, p in absent]
    if len(paths) == 1:
        raise CXRInputError(paths[0], f"listed in {listed_in} but missing (missing='skip' leaves such entries out)")
    raise CXRInputError(listed_in, f"{len(paths)} listed files are missing: {preview(paths)} (missing='skip' leaves them out)")


def preview(values: Sequence[Any], n: int = 5) -> str:
    """The first ``n`` values, comma-separated, and how many more (for error messages)."""
    shown = ", ".join(str(v) for v in values[:n])
    return shown + (f", ... ({len(values) - n} more)" if len(values) > n else "")

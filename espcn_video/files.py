"""The one atomic writer: every file we write goes beside its target first, then os.replace, so a
crash or a full disk never leaves half a file under the final name."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary name beside `path` to write to; renamed onto `path` when the block succeeds,
    removed when it fails. The folder is created when missing."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the data is on disk before the name points at it
        finally:
            os.close(fd)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], doc: Any) -> None:
    atomic_write_text(path, json.dumps(doc, indent=2, allow_nan=False) + "\n")


def write_rows(path: str | os.PathLike[str], rows: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> None:
    """Per-frame rows as CSV, or as JSON ({**extra, "frames": rows}) when the name ends in .json."""
    with atomic_path(path) as tmp:
        if Path(path).suffix.lower() == ".json":
            tmp.write_text(json.dumps({**(extra or {}), "frames": rows}, indent=2) + "\n")
            return
        with tmp.open("w", newline="") as fh:
            write_csv(fh, rows)


def write_csv(fh: IO[str], rows: list[dict[str, Any]]) -> None:
    """Rows as CSV with a header line (the first row's keys)."""
    writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["index"])
    writer.writeheader()
    writer.writerows(rows)

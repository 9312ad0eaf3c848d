"""Run records on disk: append-only JSONL logs (metrics.jsonl, samples.jsonl) and atomically written JSON results."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from chargen.errors import ChargenError


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The records of ``path``; a torn last line (the process died mid-write) is skipped."""
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def truncate_after(path: Path, step: int) -> None:
    """Drop records logged after ``step``, so a resumed run does not log those steps twice."""
    if path.exists():
        kept = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept), encoding="utf-8")


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as JSON atomically (a temp file beside ``path``, renamed over it): readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object written by ``write_json``; a ChargenError names the file and ``what`` it should hold."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ChargenError(f"{path}: no such file ({what})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ChargenError(f"{path}: cannot read {what} ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise ChargenError(f"{path}: not {what}")
    return data


def result_fields(cls: type, data: dict[str, Any], fmt: str, what: str) -> dict[str, Any]:
    """The entries of a saved result that are fields of the dataclass ``cls``, once its format tag is checked."""
    if data.get("format") != fmt:
        raise ChargenError(f"not a chargen {what} (format {data.get('format')!r}, expected {fmt!r})")
    known = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in known}

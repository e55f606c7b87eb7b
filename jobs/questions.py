"""Question files (JSONL, CSV, Parquet) and what their rows name.

A file that cannot be read at all is a usage error (:class:`QuestionFileError`, exit 2).
Inside a readable file every row stands alone: a row with a missing column, a bad
``time_s`` or ``mode`` becomes a :class:`QuestionRow` with an ``error``, recorded later as
a failed answer; the other rows go on.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videomem.pipeline.errors import VideomemError


class QuestionFileError(VideomemError):
    """The question file cannot be read at all (missing, unknown format, corrupt)."""


@dataclass(frozen=True)
class QuestionRow:
    """One row of a question file, checked; ``error`` set = a bad row."""

    line: int  # 1-based row number in the file
    video: str  # as written: id, id prefix or path
    question: str
    question_id: str | None
    time_s: float | None
    error: str | None = None

    @property
    def mode(self) -> str:
        return "global" if self.time_s is None else "breakpoint"


def question_id(video_id: str, question: str, time_s: float | None) -> str:
    """A stable id for a row that gives none: same video, question and time -> same id."""
    blob = json.dumps([video_id, question, time_s]).encode()
    return "q-" + hashlib.sha256(blob).hexdigest()[:16]


def _raw_rows(path: Path) -> list[dict[str, Any] | str]:
    """Rows as dicts; a JSONL line that is not a JSON object stays a string (its error)."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".ndjson"):
            rows: list[dict[str, Any] | str] = []
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    rows.append(f"line {n}: not JSON ({e.msg})")
                    continue
                rows.append(obj if isinstance(obj, dict) else f"line {n}: not a JSON object")
            return rows
        if suffix == ".csv":
            with path.open(newline="") as f:
                return list(csv.DictReader(f))
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return list(pq.read_table(path).to_pylist())
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise QuestionFileError(f"{path}: cannot read the question file ({e})") from e
    except Exception as e:  # pyarrow raises its own error types for a corrupt file
        raise QuestionFileError(f"{path}: cannot read the question file ({e})") from e
    raise QuestionFileError(f"{path}: unknown question file type; use .jsonl, .csv or .parquet")


def _time(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    t = float(value)
    if not math.isfinite(t):
        raise ValueError(f"time_s {value!r} is not a finite number")
    return t


def read_questions(path: str | Path) -> list[QuestionRow]:
    """Every row of a question file, checked (see the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise QuestionFileError(f"{p}: no such question file")
    out = []
    for n, raw in enumerate(_raw_rows(p), 1):
        if isinstance(raw, str):
            out.append(QuestionRow(n, "", "", None, None, raw))
            continue
        video = str(raw.get("video") or "").strip()
        question = str(raw.get("question") or "")
        qid = raw.get("question_id")
        qid = None if qid is None or str(qid).strip() == "" else str(qid)
        error = None
        time_s = None
        try:
            time_s = _time(raw.get("time_s"))
        except (TypeError, ValueError):
            error = f"time_s {raw.get('time_s')!r} is not a number"
        mode = str(raw.get("mode") or "").strip()
        if not video:
            error = "missing column/value 'video'"
        elif not question.strip():
            error = "empty question" if "question" in raw else "missing column 'question'"
        elif mode and mode not in ("global", "breakpoint"):
            error = f"unknown mode {mode!r}; use global or breakpoint"
        elif mode == "breakpoint" and time_s is None and error is None:
            error = "mode breakpoint needs time_s"
        elif mode == "global" and time_s is not None:
            error = "mode global takes no time_s"
        out.append(QuestionRow(n, video, question, qid, time_s, error))
    return out

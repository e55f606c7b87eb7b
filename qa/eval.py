"""Evaluation: MovieChat-1K style questions, judge and match scores, summaries.

Design decisions:

* **Question format** (MovieChat-1K's annotation files): one object per video with
  ``info`` (``video_path``, ``fps``), a ``global`` list and a ``breakpoint`` list of
  ``{"question", "answer"}``; a breakpoint item has ``time`` in *frames* of the
  original video (converted with ``info.fps``) or ``time_s`` in seconds. A bench is a
  JSON list of such objects, one such object, or a folder of them. Optional per item:
  ``type`` (``open`` default, ``yes/no``, ``short``, ``choice``) and ``choices``.
* **Judge** (the Video-ChatGPT protocol MovieChat reports): a local LLM reads the
  question, the reference and the prediction and replies with a Python dict string
  ``{'pred': 'yes'|'no', 'score': 0..5}``. Parsing is strict about meaning and
  lenient about wrapping: exactly one ``{...}`` in the reply (code fences and prose
  around it are ignored), read as a Python or JSON literal, with keys ``pred`` in
  yes/no (any case) and ``score`` a number (or numeric string) in [0, 5]. Anything
  else — no dict, two dicts, a missing key, a score of 7, ``'maybe'`` — is recorded
  as *unparsable* with the reason, never guessed, and left out of the judge figures
  (their count is reported).
* **Match scores** need no judge: ``exact`` (normalised equality), ``contains`` (the
  normalised reference occurs in the prediction as whole words); yes/no questions
  compare the first yes/no word of the prediction; multiple choice compares the
  option the prediction names (by its text, else by a standalone letter).
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from videomem.pipeline.errors import VideomemError
from videomem.qa.types import Mode

QType = Literal["open", "yes/no", "short", "choice"]
QTYPES = ("open", "yes/no", "short", "choice")

JUDGE_SYSTEM = (
    "You are an intelligent chatbot designed for evaluating the correctness of generative "
    "outputs for question-answer pairs. Your task is to compare the predicted answer with "
    "the correct answer and determine if they match meaningfully. Here's how you can "
    "accomplish the task:------##INSTRUCTIONS: - Focus on the meaningful match between the "
    "predicted answer and the correct answer.\n- Consider synonyms or paraphrases as valid "
    "matches.\n- Evaluate the correctness of the prediction compared to the answer."
)
JUDGE_USER = (
    "Please evaluate the following video-based question-answer pair:\n\n"
    "Question: {question}\nCorrect Answer: {answer}\nPredicted Answer: {pred}\n\n"
    "Provide your evaluation only as a yes/no and score where the score is an integer "
    "value between 0 and 5, with 5 indicating the highest meaningful match. Please "
    "generate the response in the form of a Python dictionary string with keys 'pred' "
    "and 'score', where value of 'pred' is  a string of 'yes' or 'no' and value of "
    "'score' is in INTEGER, not STRING.DO NOT PROVIDE ANY OTHER OUTPUT TEXT OR "
    "EXPLANATION. Only provide the Python dictionary string. For example, your response "
    "should look like this: {{'pred': 'yes', 'score': 4.8}}."
)


class BenchError(VideomemError):
    """A bench file cannot be read."""


@dataclass(frozen=True)
class BenchItem:
    """One question of a bench, with its reference answer."""

    video: str  # what names the video: a path/file name, an id or an id prefix
    mode: Mode
    question: str
    reference: str
    time_s: float | None = None
    qtype: QType = "open"
    choices: tuple[str, ...] = ()
    #: position in the bench (a stable id)
    index: int = 0

    @property
    def question_id(self) -> str:
        """Stable across runs and benches: the same question about the same video at
        the same time is the same answer row (so a re-run resumes)."""
        blob = json.dumps([self.video, question_text(self), self.time_s]).encode()
        return "eval-" + hashlib.sha256(blob).hexdigest()[:16]


# --------------------------------------------------------------------------- bench


def bench_items(entries: Iterable[dict[str, Any]]) -> list[BenchItem]:
    """BenchItems of MovieChat-1K style entries (see the module docstring)."""
    out: list[BenchItem] = []
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise BenchError(f"entry {n}: expected an object, got {type(entry).__name__}")
        info = entry.get("info") or {}
        video = entry.get("video") or info.get("video_path") or info.get("video")
        if not video:
            raise BenchError(f"entry {n}: no video (info.video_path or video)")
        fps = info.get("fps")
        for mode in ("global", "breakpoint"):
            for q in entry.get(mode) or []:
                time_s = None
                if mode == "breakpoint":
                    if q.get("time_s") is not None:
                        time_s = float(q["time_s"])
                    elif q.get("time") is not None and fps:
                        time_s = float(q["time"]) / float(fps)
                    else:
                        raise BenchError(
                            f"entry {n} ({video}): a breakpoint question needs time_s, or "
                            "time (frames) with info.fps"
                        )
                qtype = q.get("type", "open")
                if qtype not in QTYPES:
                    raise BenchError(f"entry {n}: unknown question type {qtype!r}; use {QTYPES}")
                out.append(
                    BenchItem(
                        video=str(video),
                        mode=mode,  # type: ignore[arg-type]
                        question=str(q.get("question", "")),
                        reference=str(q.get("answer", "")),
                        time_s=time_s,
                        qtype=qtype,
                        choices=tuple(str(c) for c in q.get("choices") or ()),
                        index=len(out),
                    )
                )
    return out


def question_text(item: BenchItem) -> str:
    """What the answering model is asked (options spelled out for multiple choice)."""
    if item.qtype == "choice" and item.choices:
        opts = " ".join(f"({string.ascii_uppercase[i]}) {c}" for i, c in enumerate(item.choices))
        return f"{item.question} Options: {opts}. Answer with the option's letter."
    if item.qtype == "yes/no":
        return f"{item.question} Answer yes or no."
    return item.question


# --------------------------------------------------------------------------- judge


@dataclass(frozen=True)
class Verdict:
    """A judge reply, parsed: ``pred``/``score`` set, or ``error`` saying why not."""

    pred: Literal["yes", "no"] | None = None
    score: float | None = None
    error: str | None = None

    @property
    def parsed(self) -> bool:
        return self.error is None


def judge_messages(question: str, reference: str, prediction: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": JUDGE_SYSTEM},
        {
            "role": "user",
            "content": JUDGE_USER.format(question=question, answer=reference, pred=prediction),
        },
    ]


_BRACES = re.compile(r"\{[^{}]*\}")


def parse_judge(reply: str) -> Verdict:
    """A judge's reply -> :class:`Verdict` (see the module docstring)."""
    if not isinstance(reply, str) or not reply.strip():
        return Verdict(error="empty reply")
    if reply.count("{") != reply.count("}"):
        return Verdict(error="unbalanced braces (a cut-off reply?)")
    found = _BRACES.findall(reply)
    if not found:
        return Verdict(error="no {...} dictionary in the reply")
    if len(found) > 1 or "{" in reply.replace(found[0], "", 1):
        return Verdict(error="several or nested dictionaries in the reply")
    raw = found[0]
    value: Any = None
    for read in (ast.literal_eval, json.loads):
        try:
            value = read(raw)
            break
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    if not isinstance(value, dict):
        return Verdict(error=f"not a dictionary literal: {raw[:80]!r}")
    keys = {str(k).strip().lower(): v for k, v in value.items()}
    if "pred" not in keys or "score" not in keys:
        return Verdict(error=f"missing key(s) {sorted({'pred', 'score'} - set(keys))}")
    pred = keys["pred"]
    if not isinstance(pred, str) or pred.strip().lower() not in ("yes", "no"):
        return Verdict(error=f"pred is {pred!r}, not 'yes' or 'no'")
    score = keys["score"]
    if isinstance(score, bool):
        return Verdict(error=f"score is {score!r}, not a number")
    if isinstance(score, str):
        try:
            score = float(score.strip())
        except ValueError:
            return Verdict(error=f"score is {score!r}, not a number")
    if not isinstance(score, int | float) or not math.isfinite(score) or not 0 <= score <= 5:
        return Verdict(error=f"score is {score!r}, not a number in 0..5")
    return Verdict(pred=pred.strip().lower(), score=float(score))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- matching


def normalise(text: str) -> str:
    """Lower case, punctuation to spaces, articles dropped, spaces collapsed."""
    t = text.lower().translate(str.maketrans(string.punctuation, " " * len(string.punctuation)))
    return " ".join(w for w in t.split() if w not in ("a", "an", "the"))


def first_yes_no(text: str) -> str | None:
    for w in normalise(text).split():
        if w in ("yes", "no"):
            return w
    return None


def chosen_option(text: str, choices: Sequence[str]) -> int | None:
    """Which option a prediction names: the one option whose text it contains, else a
    standalone letter ("B", "(B)", "B)", "B.", "answer is B"; the article in "A horse"
    is not a letter); None when it names none or several."""
    norm = normalise(text)
    hits = [i for i, c in enumerate(choices) if normalise(c) and _has(norm, normalise(c))]
    if len(hits) == 1:
        return hits[0]
    if hits:
        return None
    letters = string.ascii_uppercase[: len(choices)]
    found = set(re.findall(rf"(?:^|[\s(\[])([{letters}])(?=$|[).:,\]])", text.strip()))
    if len(found) == 1:
        return letters.index(found.pop())
    return None


def _has(hay: str, needle: str) -> bool:
    return f" {needle} " in f" {hay} "


def match_scores(item: BenchItem, prediction: str) -> dict[str, bool]:
    """``exact`` and ``contains`` (see the module docstring)."""
    if item.qtype == "yes/no":
        ok = first_yes_no(prediction) == first_yes_no(item.reference) is not None
        return {"exact": normalise(prediction) == normalise(item.reference), "contains": ok}
    if item.qtype == "choice" and item.choices:
        ref = chosen_option(item.reference, item.choices)
        got = chosen_option(prediction, item.choices)
        ok = ref is not None and got == ref
        return {"exact": ok, "contains": ok}
    p, r = normalise(prediction), normalise(item.reference)
    return {"exact": bool(r) and p == r, "contains": bool(r) and _has(p, r)}


# --------------------------------------------------------------------------- results


@dataclass
class Scored:
    """One answered (or failed) bench question with its scores."""

    item: BenchItem
    answer: str = ""
    status: str = "answered"
    error: str | None = None
    exact: bool = False
    contains: bool = False
    judge_reply: str | None = None
    judge: Verdict = field(default_factory=Verdict)

    def row(self) -> dict[str, Any]:
        d = asdict(self.item)
        d.update(
            question_id=self.item.question_id,
            answer=self.answer,
            status=self.status,
            error=self.error,
            exact=self.exact,
            contains=self.contains,
            judge_reply=self.judge_reply,
            judge_pred=self.judge.pred,
            judge_score=self.judge.score,
            judge_error=self.judge.error if self.judge_reply is not None else None,
        )
        return d


def summarise(scored: Sequence[Scored], judged: bool) -> dict[str, dict[str, Any]]:
    """Per mode (and ``all``): questions, answered, exact/contains accuracy over all
    questions (a failed answer counts as wrong), and with a judge its accuracy (share
    of 'yes') and mean 0–5 score over the parsable verdicts, and the unparsable count."""
    out: dict[str, dict[str, Any]] = {}
    for mode in ("global", "breakpoint", "all"):
        rows = [s for s in scored if mode == "all" or s.item.mode == mode]
        if not rows:
            continue
        n = len(rows)
        d: dict[str, Any] = {
            "questions": n,
            "answered": sum(s.status == "answered" for s in rows),
            "exact": sum(s.exact for s in rows) / n,
            "contains": sum(s.contains for s in rows) / n,
        }
        if judged:
            ok = [s for s in rows if s.judge_reply is not None and s.judge.parsed]
            d["judged"] = len(ok)
            d["unparsable"] = sum(s.judge_reply is not None and not s.judge.parsed for s in rows)
            d["judge_accuracy"] = (sum(s.judge.pred == "yes" for s in ok) / len(ok)) if ok else None
            d["judge_score"] = (sum(s.judge.score or 0 for s in ok) / len(ok)) if ok else None
        out[mode] = d
    return out


def summary_table(summary: dict[str, dict[str, Any]]) -> str:
    """The summary as a fixed-width table."""
    cols = ["questions", "answered", "exact", "contains", "judged", "unparsable"]
    cols += ["judge_accuracy", "judge_score"]
    cols = [c for c in cols if any(c in d for d in summary.values())]
    head = f"{'mode':11}" + "".join(f"{c:>15}" for c in cols)

    def cell(v: Any) -> str:
        if v is None:
            return f"{'-':>15}"
        return f"{v:>15.3f}" if isinstance(v, float) else f"{v:>15}"

    lines = [head] + [f"{m:11}" + "".join(cell(d.get(c)) for c in cols) for m, d in summary.items()]
    return "\n".join(lines)

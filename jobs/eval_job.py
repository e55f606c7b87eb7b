"""``videomem eval``: answer a bench's questions from stored memories, then score.

The answers come from the bulk QA jobs (the memory's VLM, or ``--llm`` from the text
timeline), called with the bench's questions in memory, so they land in the store's
``answers`` table with the same resume and bad-row handling; the questions and answers
are also written to the output folder as a record, not read back.
Then each answer gets match scores and, with ``--judge``, the judge's verdict
(:mod:`videomem.qa.eval`). Outputs in ``out``: ``questions.jsonl``,
``answers.jsonl`` (the QA rows), ``scores.jsonl`` (one row per question with its
scores and the judge's raw reply) and ``summary.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videomem.jobs.qa_job import QAJob, run_qa
from videomem.jobs.questions import QuestionRow
from videomem.qa.eval import (
    BenchError,
    BenchItem,
    Scored,
    judge_messages,
    match_scores,
    parse_judge,
    question_text,
    summarise,
)
from videomem.qa.types import GenerationSettings

#: the judge's generation: greedy, room for the dict and a little more
JUDGE_SETTINGS = GenerationSettings(max_new_tokens=48)


@dataclass(frozen=True)
class EvalJob:
    bench: str
    store: str
    out: str
    #: text LLM answering from the timeline; None = the memory's VLM (or ``model``)
    llm: str | None = None
    model: str | None = None
    judge: str | None = None
    settings: GenerationSettings = field(
        default_factory=lambda: GenerationSettings(max_new_tokens=32)
    )
    device: str | None = None
    dtype: str | None = None
    force: bool = False
    #: LanceDB storage options of an object-store URI (``--storage-option``)
    storage_options: dict[str, str] = field(default_factory=dict)


@dataclass
class EvalResult:
    summary: dict[str, dict[str, Any]]
    scored: list[Scored]
    paths: dict[str, Path]
    seconds: float = 0.0


def read_bench(path: str | Path) -> list[BenchItem]:
    """A bench file (a JSON list of video entries, or one entry) or a folder of them."""
    from videomem.qa.eval import bench_items

    p = Path(path)
    files = sorted(p.glob("*.json")) if p.is_dir() else [p]
    if not files:
        raise BenchError(f"{path}: no .json files")
    entries: list[Any] = []
    for f in files:
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise BenchError(f"cannot read bench {f}: {e}") from e
        entries += data if isinstance(data, list) else [data]
    return bench_items(entries)


def _video_ids(job: EvalJob, items: list[BenchItem]) -> dict[str, str]:
    """Bench video names -> stored ids: MovieChat names a file (``1.mp4``), matched to
    the stored videos' file names; anything else is left to the QA job to resolve."""
    from videomem.memory.store import Store

    with Store(job.store, storage_options=job.storage_options) as st:
        by_name: dict[str, set[str]] = {}
        for r in st.list_videos("indexed"):
            by_name.setdefault(Path(r.uri).name, set()).add(r.video_id)
    out = {}
    for v in {i.video for i in items}:
        ids = by_name.get(Path(v).name, set())
        out[v] = next(iter(ids)) if len(ids) == 1 else v
    return out


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        for r in rows:
            f.write(json.dumps(r, default=str) + "\n")
    tmp.replace(path)
    return path


def run_eval(job: EvalJob, log: Any = None) -> EvalResult:
    """Answer, score and summarise a bench (see the module docstring)."""
    t0 = time.perf_counter()
    out = Path(job.out)
    out.mkdir(parents=True, exist_ok=True)
    items = read_bench(job.bench)
    if not items:
        raise BenchError(f"{job.bench}: no questions")
    ids = _video_ids(job, items)
    questions = [
        QuestionRow(n, ids[i.video], question_text(i), i.question_id, i.time_s)
        for n, i in enumerate(items, 1)
    ]
    paths = {"questions": out / "questions.jsonl", "answers": out / "answers.jsonl"}
    _write_jsonl(
        paths["questions"],
        [
            {"question_id": q.question_id, "video": q.video, "question": q.question,
             "time_s": q.time_s}
            for q in questions
        ],
    )  # fmt: skip
    qa = QAJob(
        questions=job.bench,
        store=job.store,
        settings=job.settings,
        model=job.model,
        device=job.device,
        dtype=job.dtype,
        force=job.force,
        storage_options=job.storage_options,
        llm=job.llm,
    )
    if job.llm is not None:
        from videomem.jobs.timeline_job import run_timeline_qa

        qa_summary = run_timeline_qa(qa, job.llm, questions=questions, keep_answers=True)
    else:
        qa_summary = run_qa(qa, questions=questions, keep_answers=True)
    if log:
        log(f"answers: {qa_summary.text()}")
    _write_jsonl(paths["answers"], qa_summary.answers)
    rows = {(r["question_id"], r["video_id"]): r for r in qa_summary.answers}
    scored = []
    for i in items:
        r = rows.get((i.question_id, ids[i.video]))
        if r is None:
            scored.append(Scored(i, status="failed", error="no answer row"))
            continue
        s = Scored(i, answer=r["answer"] or "", status=r["status"], error=r["error"])
        if s.status == "answered":
            m = match_scores(i, s.answer)
            s.exact, s.contains = m["exact"], m["contains"]
        scored.append(s)
    if job.judge is not None:
        _judge(job, scored, log)
    summary = summarise(scored, judged=job.judge is not None)
    paths["scores"] = _write_jsonl(out / "scores.jsonl", [s.row() for s in scored])
    meta = {
        "bench": job.bench,
        "store": job.store,
        "answered_by": job.llm or job.model or "the memory's VLM",
        "source": "timeline" if job.llm else "memory",
        "judge": job.judge,
        "settings": json.loads(job.settings.to_json()),
        "summary": summary,
    }
    paths["summary"] = out / "summary.json"
    tmp = paths["summary"].with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    tmp.replace(paths["summary"])
    return EvalResult(summary, scored, paths, time.perf_counter() - t0)


def _judge(job: EvalJob, scored: list[Scored], log: Any) -> None:
    """The judge's verdict on every answered question (failed answers get none)."""
    from videomem.qa.textllm import TextLLM

    judge = TextLLM(job.judge or "", job.device, job.dtype, name=job.judge)
    for s in scored:
        if s.status != "answered":
            continue
        reply = judge.reply(
            judge_messages(question_text(s.item), s.item.reference, s.answer), JUDGE_SETTINGS
        )
        s.judge_reply = reply.text
        s.judge = parse_judge(reply.text)
    if log:
        bad = sum(s.judge_reply is not None and not s.judge.parsed for s in scored)
        log(
            f"judge {job.judge}: {sum(s.judge_reply is not None for s in scored)} verdicts, {bad} unparsable"
        )

"""``videomem ask``, ``videomem qa`` and ``videomem caption``: questions and captions
answered from stored memories (or, with ``--llm``, from the text timeline)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import typer
from videomem.jobs import api
from videomem.jobs.cli.options import (
    ExecutorOptions,
    GenerationOptions,
    StoreOptions,
    command,
    json_flag,
    print_summary,
    usage_errors,
)


@dataclasses.dataclass(frozen=True)
class AskOptions(StoreOptions, GenerationOptions):
    video: str = typer.Argument(
        ..., help="Video id, unique id prefix, the indexed file, or its file name."
    )
    question: str = typer.Argument(..., help="The question.")
    at: float | None = typer.Option(None, "--at", help="Ask about this time (breakpoint mode).")
    as_json: bool = json_flag("Print the answer row as JSON.")

    def request(self) -> api.AskRequest:
        return api.AskRequest(
            video=self.video, question=self.question, at=self.at, **self.where(), **self.answering()
        )


@command
def ask(o: AskOptions) -> None:
    """Answer one question about a stored video from its memory."""
    with usage_errors():
        result = api.ask(o.request())
    if o.as_json:
        row = {**result.row, "answered_at": result.row["answered_at"].isoformat()}
        typer.echo(json.dumps(row, indent=2))
    elif result.failed:
        typer.echo(f"error: {result.answer.error}", err=True)
    else:
        typer.echo(result.answer.answer)
    if result.failed:
        raise typer.Exit(1)


@dataclasses.dataclass(frozen=True)
class QAOptions(StoreOptions, GenerationOptions, ExecutorOptions):
    questions: Path = typer.Argument(
        ..., help="JSONL, CSV or Parquet: video, question, [question_id], [time_s], [mode]."
    )
    out: str | None = typer.Option(None, help="Also write the answers to .parquet or .jsonl.")
    force: bool = typer.Option(False, "--force", help="Re-answer what the store already has.")
    batch_size: int = typer.Option(1, help="Questions per batch when the prefix is not reused.")
    no_reuse: bool = typer.Option(
        False, "--no-reuse", help="Prefill each question's whole prompt (no prefix cache)."
    )
    as_json: bool = json_flag()

    def job(self) -> Any:
        from videomem.jobs.qa_job import QAJob

        return QAJob(
            questions=str(self.questions), out=self.out, force=self.force,
            reuse_prefix=not self.no_reuse, batch_size=self.batch_size,
            **self.where(), **self.answering(), **self.execution(),
        )  # fmt: skip


@command
def qa(o: QAOptions) -> None:
    """Answer a file of questions into the store's answers table (resumable)."""
    with usage_errors():
        summary = api.qa(o.job())
    print_summary(summary, o.as_json)
    if summary.rows and summary.failed == summary.rows:
        raise typer.Exit(1)


@dataclasses.dataclass(frozen=True)
class CaptionOptions(StoreOptions, GenerationOptions, ExecutorOptions):
    videos: list[str] = typer.Argument(None, help="Videos (ids, prefixes, files); default all.")
    dense_every: float | None = typer.Option(
        None,
        help="Dense captions per segment of slots spanning at most this many seconds "
        "(default: one per slot).",
    )
    force: bool = typer.Option(False, "--force", help="Caption again what is captioned.")
    batch_size: int = typer.Option(4, help="Dense segments per batch.")

    def job(self) -> Any:
        from videomem.jobs.caption_job import CaptionJob

        return CaptionJob(
            videos=tuple(self.videos or ()), dense_every=self.dense_every, force=self.force,
            batch_size=self.batch_size, **self.where(), **self.answering(), **self.execution(),
        )  # fmt: skip


@command
def caption(o: CaptionOptions) -> None:
    """Write global and dense captions of videos into the store's captions table
    (with --llm: a global caption written from the text timeline)."""
    with usage_errors():
        summary = api.caption(o.job())
    typer.echo(summary.text())
    for f in summary.failures:
        typer.echo(f"  failed: {f.splitlines()[0]}")
    if summary.videos and summary.failed == summary.videos:
        raise typer.Exit(1)

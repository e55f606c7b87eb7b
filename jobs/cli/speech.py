"""``videomem transcribe``: stored videos' speech into the store's transcripts."""

from __future__ import annotations

import dataclasses
from typing import Any

import typer
from videomem.jobs import api
from videomem.jobs.cli.options import (
    ASROptions,
    ExecutorOptions,
    StoreOptions,
    command,
    json_flag,
    print_summary,
    usage_errors,
)


@dataclasses.dataclass(frozen=True)
class TranscribeOptions(StoreOptions, ExecutorOptions, ASROptions):
    videos: list[str] = typer.Argument(
        None, help="Stored videos (ids, prefixes, files); default every indexed one."
    )
    device: str | None = typer.Option(
        None, help="auto (GPU float16 when CTranslate2 sees one, else CPU int8), cpu, cuda:N."
    )
    force: bool = typer.Option(False, "--force", help="Transcribe again what is transcribed.")
    as_json: bool = json_flag()

    def job(self) -> Any:
        from videomem.jobs.transcribe_job import TranscribeJob

        return TranscribeJob(
            videos=tuple(self.videos or ()), asr=self.asr(self.device), force=self.force,
            **self.where(), **self.execution(),
        )  # fmt: skip


@command
def transcribe(o: TranscribeOptions) -> None:
    """Transcribe the speech of stored videos (Whisper; re-reads each video's audio
    from its indexed file, content checked) into the transcripts table.

    A video without an audio stream is recorded as "no audio"; a broken one as failed
    with its reason. Resumable: what has a transcript with the same settings is skipped."""
    with usage_errors():
        summary = api.transcribe(o.job())
    print_summary(summary, o.as_json)
    if summary.videos and summary.failed == summary.videos:
        raise typer.Exit(1)

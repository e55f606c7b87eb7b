"""``videomem tag``, ``videomem models`` and ``videomem eval``: the text timeline, the
named models that read it, and scoring answers against a bench."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import typer
from videomem.jobs import api
from videomem.jobs.cli.options import (
    DEVICE_HELP,
    ExecutorOptions,
    ModelDeviceOptions,
    StoreOptions,
    command,
    fail_usage,
    json_flag,
    print_summary,
    usage_errors,
)


@dataclasses.dataclass(frozen=True)
class TagOptions(StoreOptions, ExecutorOptions):
    videos: list[str] = typer.Argument(None, help="Videos (ids, prefixes, files); default all.")
    k: int = typer.Option(5, "-k", "--top-k", help="Tags per slot.")
    vocabulary: Path | None = typer.Option(
        None,
        help="CLIP/SigLIP zero-shot labels, one per line (default: the list shipped "
        "with videomem). MobileNetV2 uses its own ImageNet classes.",
    )
    force: bool = typer.Option(False, "--force", help="Tag again what is tagged.")
    device: str | None = typer.Option(None, help=DEVICE_HELP)
    as_json: bool = json_flag()

    def job(self) -> Any:
        from videomem.jobs.tag_job import TagJob

        if self.vocabulary is not None and not self.vocabulary.is_file():
            raise fail_usage(f"no such vocabulary file: {self.vocabulary}")
        return TagJob(
            videos=tuple(self.videos or ()), k=self.k, force=self.force, device=self.device,
            vocabulary=str(self.vocabulary) if self.vocabulary else None,
            **self.where(), **self.execution(),
        )  # fmt: skip


@command
def tag(o: TagOptions) -> None:
    """Tag every slot of stored memories (top-k labels) into the captions table.

    Reads stored memories only (no video is decoded): MobileNetV2 through its ImageNet
    classifier head, CLIP/SigLIP zero-shot against a vocabulary."""
    with usage_errors():
        summary = api.tag(o.job())
    print_summary(summary, o.as_json)
    if summary.videos and summary.failed == summary.videos:
        raise typer.Exit(1)


@dataclasses.dataclass(frozen=True)
class PrepareOptions:
    name: str = typer.Argument(..., help="A prepared model name, e.g. smollm2.")
    force: bool = typer.Option(False, "--force", help="Convert again.")


@command
def models_prepare(o: PrepareOptions) -> None:
    """Convert a named model once into a safetensors checkpoint in the cache
    (otherwise done automatically on its first use)."""
    with usage_errors():
        path = api.prepare_model(o.name, force=o.force)
    typer.echo(f"{o.name}  {path}")


@dataclasses.dataclass(frozen=True)
class ConvertOptions:
    family: str = typer.Argument(..., help="The model family: moviechat.")
    checkpoint: Path = typer.Option(..., help="MovieChat's finetuned .pth (video side).")
    qformer: Path = typer.Option(..., help="The BLIP-2 / MiniGPT-4 .pth (frame side).")
    llm: Path = typer.Option(..., help="The Vicuna-7B (LLaMA) directory.")
    out: Path = typer.Option(..., help="The checkpoint directory to write.")
    force: bool = typer.Option(False, "--force", help="Replace an existing --out.")


@command
def models_convert(o: ConvertOptions) -> None:
    """Convert a model's released weights into one safetensors checkpoint directory
    that --model takes; every input key is mapped or dropped for a stated reason."""
    with usage_errors():
        path, report = api.convert_model(
            o.family, o.checkpoint, o.qformer, o.llm, o.out, force=o.force
        )
    typer.echo(f"{path}  ({len(report.mapped)} tensors, {len(report.dropped)} keys dropped)")


def models_ls() -> None:
    """List the named models and whether each is prepared."""
    for m in api.models():
        state = "prepared" if m.prepared else "not prepared"
        typer.echo(f"{m.name:10} {state:13} {m.path}  (from {m.source})")


@dataclasses.dataclass(frozen=True)
class EvalOptions(StoreOptions, ModelDeviceOptions):
    bench: Path = typer.Argument(
        ..., help="MovieChat-1K style questions: a JSON file (list of videos) or a folder."
    )
    llm: str | None = typer.Option(
        None, "--llm", help="Answer from the text timeline with this LLM (e.g. smollm2)."
    )
    model: str | None = typer.Option(
        None, help="Answer with this VLM instead of the memory's own (without --llm)."
    )
    judge: str | None = typer.Option(
        None, help="LLM that judges answers (Video-ChatGPT protocol: yes/no + 0-5 score)."
    )
    out: Path = typer.Option(Path("videomem-eval"), help="Folder for answers, scores, summary.")
    max_new_tokens: int = typer.Option(32, help="Most tokens generated per answer.")
    force: bool = typer.Option(False, "--force", help="Answer again what the store has.")
    as_json: bool = json_flag()

    def job(self) -> Any:
        from videomem.jobs.eval_job import EvalJob
        from videomem.qa.types import GenerationSettings

        if not self.bench.exists():
            raise fail_usage(f"no such bench file or folder: {self.bench}")
        return EvalJob(
            bench=str(self.bench), out=str(self.out), llm=self.llm, model=self.model,
            judge=self.judge, settings=GenerationSettings(max_new_tokens=self.max_new_tokens),
            device=self.device, dtype=self.dtype, force=self.force, **self.where(),
        )  # fmt: skip


@command
def eval_(o: EvalOptions) -> None:
    """Answer a bench's global and breakpoint questions from stored memories and score
    them: exact/contains match, and with --judge the judge's accuracy and mean score."""
    from videomem.qa.eval import summary_table

    with usage_errors():
        result = api.evaluate(o.job(), log=lambda m: typer.echo(m, err=True))
    if o.as_json:
        typer.echo(json.dumps(result.summary, indent=2))
        return
    typer.echo(summary_table(result.summary))
    for name, path in result.paths.items():
        typer.echo(f"{name:9} {path}")

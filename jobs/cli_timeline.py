"""``videomem tag``, ``videomem models`` and ``videomem eval``: registered on the app of
:mod:`videomem.jobs.cli`. Commands only build jobs and hand them to library code."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from videomem.jobs.cli import _STORAGE, _STORE, _fail_usage, _print_summary, _storage_options, app

models_app = typer.Typer(
    help="Named models videomem prepares into its cache.", no_args_is_help=True
)
app.add_typer(models_app, name="models")


@app.command()
def tag(
    videos: list[str] = typer.Argument(None, help="Videos (ids, prefixes, files); default all."),
    store: str = _STORE,
    k: int = typer.Option(5, "-k", "--top-k", help="Tags per slot."),
    vocabulary: Path | None = typer.Option(
        None,
        help="CLIP/SigLIP zero-shot labels, one per line (default: the list shipped "
        "with videomem). MobileNetV2 uses its own ImageNet classes.",
    ),
    force: bool = typer.Option(False, "--force", help="Tag again what is tagged."),
    device: str | None = typer.Option(None, help="cuda, cpu, cuda:1 … (default: CUDA if present)."),
    executor: str = typer.Option("auto", help="auto, local or ray."),
    workers: int = typer.Option(1, help="Parallel workers (Ray actors)."),
    ray_address: str | None = typer.Option(None, help="Ray cluster address (or RAY_ADDRESS)."),
    storage_option: list[str] = _STORAGE,
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Tag every slot of stored memories (top-k labels) into the captions table.

    Reads stored memories only (no video is decoded): MobileNetV2 through its ImageNet
    classifier head, CLIP/SigLIP zero-shot against a vocabulary."""
    from videomem.jobs.tag_job import TagJob, run_tag
    from videomem.pipeline.errors import VideomemError

    if vocabulary is not None and not vocabulary.is_file():
        raise _fail_usage(f"no such vocabulary file: {vocabulary}")
    try:
        job = TagJob(
            store=store,
            videos=tuple(videos or ()),
            k=k,
            vocabulary=str(vocabulary) if vocabulary else None,
            force=force,
            device=device,
            executor=executor,  # type: ignore[arg-type]
            workers=workers,
            ray_address=ray_address,
            storage_options=_storage_options(storage_option),
        )
        summary = run_tag(job)
    except VideomemError as e:
        raise _fail_usage(str(e)) from None
    _print_summary(summary, as_json)
    if summary.videos and summary.failed == summary.videos:
        raise typer.Exit(1)


@models_app.command("prepare")
def models_prepare(
    name: str = typer.Argument(..., help="A prepared model name, e.g. smollm2."),
    force: bool = typer.Option(False, "--force", help="Convert again."),
) -> None:
    """Convert a named model once into a safetensors checkpoint in the cache
    (otherwise done automatically on its first use)."""
    from videomem.pipeline.errors import VideomemError
    from videomem.qa.prepared import prepare

    try:
        path = prepare(name, force=force)
    except VideomemError as e:
        raise _fail_usage(str(e)) from None
    typer.echo(f"{name}  {path}")


@models_app.command("ls")
def models_ls() -> None:
    """List the named models and whether each is prepared."""
    from videomem.qa.prepared import PREPARED, is_prepared, prepared_dir

    for name, src in PREPARED.items():
        path = prepared_dir(name)
        state = "prepared" if is_prepared(path) else "not prepared"
        typer.echo(f"{name:10} {state:13} {path}  (from {src.distribution}: {src.filename})")


@app.command("eval")
def eval_(
    bench: Path = typer.Argument(
        ..., help="MovieChat-1K style questions: a JSON file (list of videos) or a folder."
    ),
    store: str = _STORE,
    llm: str | None = typer.Option(
        None, "--llm", help="Answer from the text timeline with this LLM (e.g. smollm2)."
    ),
    model: str | None = typer.Option(
        None, help="Answer with this VLM instead of the memory's own (without --llm)."
    ),
    judge: str | None = typer.Option(
        None, help="LLM that judges answers (Video-ChatGPT protocol: yes/no + 0-5 score)."
    ),
    out: Path = typer.Option(Path("videomem-eval"), help="Folder for answers, scores, summary."),
    max_new_tokens: int = typer.Option(32, help="Most tokens generated per answer."),
    force: bool = typer.Option(False, "--force", help="Answer again what the store has."),
    device: str | None = typer.Option(None, help="cuda, cpu, cuda:1 … (default: CUDA if present)."),
    dtype: str | None = typer.Option(None, help="float32, bfloat16, float16 (default by device)."),
    storage_option: list[str] = _STORAGE,
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Answer a bench's global and breakpoint questions from stored memories and score
    them: exact/contains match, and with --judge the judge's accuracy and mean score."""
    from videomem.jobs.eval_job import EvalJob, run_eval
    from videomem.pipeline.errors import VideomemError
    from videomem.qa.eval import summary_table
    from videomem.qa.types import GenerationSettings

    if not bench.exists():
        raise _fail_usage(f"no such bench file or folder: {bench}")
    try:
        job = EvalJob(
            bench=str(bench),
            store=store,
            out=str(out),
            llm=llm,
            model=model,
            judge=judge,
            settings=GenerationSettings(max_new_tokens=max_new_tokens),
            device=device,
            dtype=dtype,
            force=force,
            storage_options=_storage_options(storage_option),
        )
        result = run_eval(job, log=lambda m: typer.echo(m, err=True))
    except VideomemError as e:
        raise _fail_usage(str(e)) from None
    if as_json:
        typer.echo(json.dumps(result.summary, indent=2))
        return
    typer.echo(summary_table(result.summary))
    for name, path in result.paths.items():
        typer.echo(f"{name:9} {path}")

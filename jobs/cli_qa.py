"""``videomem ask``, ``videomem qa`` and ``videomem caption``: registered on the app of
:mod:`videomem.jobs.cli`. Commands only build settings and jobs and hand them to
``videomem.qa`` / :mod:`videomem.jobs.qa_job`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from videomem.jobs.cli import (
    _STORAGE,
    _STORE,
    _fail_usage,
    _print_summary,
    _storage_options,
    app,
)

_MODEL = typer.Option(
    None,
    help="Checkpoint that answers (default: the one that indexed the video; another "
    "is refused unless its encoder fingerprint matches).",
)
_MAX_NEW = typer.Option(64, help="Most tokens generated per answer.")
_TEMPERATURE = typer.Option(None, help="Sample with this temperature (default: greedy).")
_TOP_P = typer.Option(None, help="Sample with this nucleus mass (default: greedy).")
_SEED = typer.Option(None, help="Sampler seed.")
_SYSTEM = typer.Option(None, help="System prompt.")
_STYLE = typer.Option(
    "timestamped", help="timestamped (slot spans as text) or native (the processor's layout)."
)
_MAX_CONTEXT = typer.Option(
    None, help="Context budget in tokens (default: the LM's); past it, slots are merged to K."
)
_LLM = typer.Option(
    None,
    "--llm",
    help="Answer from the video's text timeline (tags/captions) with this text LLM "
    "(hub id, directory, or 'smollm2') instead of the memory's VLM.",
)
_DEVICE = typer.Option(None, help="cuda, cpu, cuda:1 … (default: CUDA if present).")
_DTYPE = typer.Option(None, help="float32, bfloat16, float16 (default by device).")


def _settings(
    max_new_tokens: int,
    temperature: float | None,
    top_p: float | None,
    seed: int | None,
    system_prompt: str | None,
    prompt_style: str,
    max_context: int | None,
):  # type: ignore[no-untyped-def]
    from videomem.qa import GenerationSettings

    sample = temperature is not None or top_p is not None
    return GenerationSettings(
        max_new_tokens=max_new_tokens,
        do_sample=sample,
        temperature=1.0 if temperature is None else temperature,
        top_p=1.0 if top_p is None else top_p,
        seed=seed,
        system_prompt=system_prompt,
        prompt_style=prompt_style,  # type: ignore[arg-type]
        max_context=max_context,
    )


@app.command()
def ask(
    video: str = typer.Argument(..., help="Video id, unique id prefix, or the indexed file."),
    question: str = typer.Argument(..., help="The question."),
    store: str = _STORE,
    at: float | None = typer.Option(None, "--at", help="Ask about this time (breakpoint mode)."),
    as_json: bool = typer.Option(False, "--json", help="Print the answer row as JSON."),
    model: str | None = _MODEL,
    max_new_tokens: int = _MAX_NEW,
    temperature: float | None = _TEMPERATURE,
    top_p: float | None = _TOP_P,
    seed: int | None = _SEED,
    system_prompt: str | None = _SYSTEM,
    prompt_style: str = _STYLE,
    max_context: int | None = _MAX_CONTEXT,
    device: str | None = _DEVICE,
    dtype: str | None = _DTYPE,
    llm: str | None = _LLM,
    storage_option: list[str] = _STORAGE,
) -> None:
    """Answer one question about a stored video from its memory."""
    from videomem.jobs.qa_job import answer_row
    from videomem.jobs.videos import resolve_video
    from videomem.memory.store import Store
    from videomem.pipeline.errors import VideomemError
    from videomem.qa import Question, VideoContext, answer, load_for_record

    try:
        settings = _settings(
            max_new_tokens, temperature, top_p, seed, system_prompt, prompt_style, max_context
        )
        options = _storage_options(storage_option)
        if llm is not None:
            from videomem.jobs.timeline_job import ask_timeline

            row, a = ask_timeline(store, video, question, at, llm, settings, device, dtype, options)
            _print_answer(row, a, as_json)
            return
        with Store(store, storage_options=options) as st:
            vid = resolve_video(st, video)
            rec = st.latest(vid)
            session = load_for_record(rec, model, device, dtype)
            mem = st.load_memory(
                vid, encoder_fingerprint=rec.encoder_fingerprint, config_hash=rec.config_hash
            )
        (a,) = answer(
            session.qa,
            mem,
            [Question(question, at)],
            settings,
            duration_s=rec.duration_s,
            video=VideoContext.from_record(rec),
            encoder=session.encoder,
        )
    except VideomemError as e:
        raise _fail_usage(str(e)) from None
    _print_answer(answer_row("", vid, a, session.model, settings, rec), a, as_json)


def _print_answer(row: dict, a, as_json: bool) -> None:  # type: ignore[no-untyped-def, type-arg]
    if as_json:
        row["answered_at"] = row["answered_at"].isoformat()
        typer.echo(json.dumps(row, indent=2))
    elif a.status == "failed":
        typer.echo(f"error: {a.error}", err=True)
    else:
        typer.echo(a.answer)
    if a.status == "failed":
        raise typer.Exit(1)


@app.command("qa")
def qa_(
    questions: Path = typer.Argument(
        ..., help="JSONL, CSV or Parquet: video, question, [question_id], [time_s], [mode]."
    ),
    store: str = _STORE,
    out: str | None = typer.Option(None, help="Also write the answers to .parquet or .jsonl."),
    force: bool = typer.Option(False, "--force", help="Re-answer what the store already has."),
    model: str | None = _MODEL,
    max_new_tokens: int = _MAX_NEW,
    temperature: float | None = _TEMPERATURE,
    top_p: float | None = _TOP_P,
    seed: int | None = _SEED,
    system_prompt: str | None = _SYSTEM,
    prompt_style: str = _STYLE,
    max_context: int | None = _MAX_CONTEXT,
    device: str | None = _DEVICE,
    dtype: str | None = _DTYPE,
    batch_size: int = typer.Option(1, help="Questions per batch when the prefix is not reused."),
    no_reuse: bool = typer.Option(
        False, "--no-reuse", help="Prefill each question's whole prompt (no prefix cache)."
    ),
    executor: str = typer.Option("auto", help="auto, local or ray."),
    workers: int = typer.Option(1, help="Parallel workers (Ray actors)."),
    ray_address: str | None = typer.Option(None, help="Ray cluster address (or RAY_ADDRESS)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    llm: str | None = _LLM,
    storage_option: list[str] = _STORAGE,
) -> None:
    """Answer a file of questions into the store's answers table (resumable)."""
    from videomem.jobs.qa_job import QAJob, run_qa
    from videomem.pipeline.errors import VideomemError

    try:
        job = QAJob(
            questions=str(questions),
            store=store,
            settings=_settings(
                max_new_tokens, temperature, top_p, seed, system_prompt, prompt_style, max_context
            ),
            out=out,
            model=model,
            device=device,
            dtype=dtype,
            force=force,
            reuse_prefix=not no_reuse,
            batch_size=batch_size,
            executor=executor,  # type: ignore[arg-type]
            workers=workers,
            ray_address=ray_address,
            storage_options=_storage_options(storage_option),
        )
        if llm is not None:
            from videomem.jobs.timeline_job import run_timeline_qa

            summary = run_timeline_qa(job, llm)
        else:
            summary = run_qa(job)
    except VideomemError as e:
        raise _fail_usage(str(e)) from None
    _print_summary(summary, as_json)
    if summary.rows and summary.failed == summary.rows:
        raise typer.Exit(1)


@app.command()
def caption(
    videos: list[str] = typer.Argument(None, help="Videos (ids, prefixes, files); default all."),
    store: str = _STORE,
    dense_every: float | None = typer.Option(
        None,
        help="Dense captions per segment of slots spanning at most this many seconds "
        "(default: one per slot).",
    ),
    force: bool = typer.Option(False, "--force", help="Caption again what is captioned."),
    model: str | None = _MODEL,
    max_new_tokens: int = _MAX_NEW,
    temperature: float | None = _TEMPERATURE,
    top_p: float | None = _TOP_P,
    seed: int | None = _SEED,
    system_prompt: str | None = _SYSTEM,
    prompt_style: str = _STYLE,
    max_context: int | None = _MAX_CONTEXT,
    device: str | None = _DEVICE,
    dtype: str | None = _DTYPE,
    batch_size: int = typer.Option(4, help="Dense segments per batch."),
    executor: str = typer.Option("auto", help="auto, local or ray."),
    workers: int = typer.Option(1, help="Parallel workers (Ray actors)."),
    ray_address: str | None = typer.Option(None, help="Ray cluster address (or RAY_ADDRESS)."),
    llm: str | None = _LLM,
    storage_option: list[str] = _STORAGE,
) -> None:
    """Write global and dense captions of videos into the store's captions table
    (with --llm: a global caption written from the text timeline)."""
    from videomem.jobs.qa_job import CaptionJob, run_caption
    from videomem.pipeline.errors import VideomemError

    def run(job: CaptionJob):  # type: ignore[no-untyped-def]
        if llm is None:
            return run_caption(job)
        from videomem.jobs.timeline_job import run_timeline_caption

        return run_timeline_caption(job, llm)

    try:
        summary = run(
            CaptionJob(
                store=store,
                videos=tuple(videos or ()),
                settings=_settings(
                    max_new_tokens,
                    temperature,
                    top_p,
                    seed,
                    system_prompt,
                    prompt_style,
                    max_context,
                ),
                dense_every=dense_every,
                model=model,
                device=device,
                dtype=dtype,
                force=force,
                batch_size=batch_size,
                executor=executor,  # type: ignore[arg-type]
                workers=workers,
                ray_address=ray_address,
                storage_options=_storage_options(storage_option),
            )
        )
    except VideomemError as e:
        raise _fail_usage(str(e)) from None
    typer.echo(summary.text())
    for f in summary.failures:
        typer.echo(f"  failed: {f.splitlines()[0]}")
    if summary.videos and summary.failed == summary.videos:
        raise typer.Exit(1)

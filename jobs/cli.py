"""The ``videomem`` command line.

Commands only build config objects and hand them to library code (``pipeline``,
``memory``, ``jobs.index`` …); nothing here holds algorithm logic, so everything a
command does is importable and testable without the CLI.
"""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    name="videomem",
    help="Index video corpora into compact long-term memories and query them.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """videomem: index video corpora into compact long-term memories and query them."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("videomem")
    except PackageNotFoundError:  # running from a source tree without install
        return "0+unknown"


@app.command()
def version() -> None:
    """Print the installed videomem version."""
    typer.echo(f"videomem {_version()}")


# --------------------------------------------------------------------------- index / ls / show


def _fail_usage(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _parse_options(items: list[str]) -> dict[str, object]:
    """KEY=VALUE strings -> dict; values are JSON when they parse (numbers, true,
    null), else plain strings."""
    import json

    from videomem.pipeline.errors import ConfigError

    out: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"encoder option {item!r} is not KEY=VALUE")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


@app.command()
def index(
    paths: list[Path] = typer.Argument(None, help="Video files and/or folders (walked)."),
    store: str = typer.Option("videomem-store", help="Store directory or LanceDB URI."),
    from_list: Path | None = typer.Option(
        None, "--from-list", help="A text file naming one video path per line."
    ),
    model: str = typer.Option(
        ..., help="Hugging Face hub id or checkpoint directory; 'tiny' = random smoke model."
    ),
    fps: float | None = typer.Option(None, help="Frames per second to sample (default 1)."),
    frames: int | None = typer.Option(None, help="Sample exactly N frames per video instead."),
    start: float | None = typer.Option(None, help="Index from this time (seconds)."),
    end: float | None = typer.Option(None, help="Index up to this time (seconds)."),
    aspect: str = typer.Option(
        "pad", help="Fit other aspect ratios by pad (letterbox), crop (centre) or stretch."
    ),
    encoder_option: list[str] = typer.Option(
        [],
        "--encoder-option",
        "-o",
        help="Family option KEY=VALUE, repeatable (CLIP/SigLIP: layer=-2, pool=4; "
        "BLIP-2: tokens=projected). Part of the encoder fingerprint.",
    ),
    batch_size: int = typer.Option(32, help="Frames per encoder forward pass."),
    device: str | None = typer.Option(None, help="cuda, cpu, cuda:1 … (default: CUDA if present)."),
    dtype: str | None = typer.Option(None, help="float32, bfloat16, float16 (default by device)."),
    memory_preset: str = typer.Option("default", help="Memory config preset."),
    long_term_len: int | None = typer.Option(None, help="Override: long-term memory slots."),
    short_term_len: int | None = typer.Option(None, help="Override: short-term buffer frames."),
    force: bool = typer.Option(False, "--force", help="Re-index videos already stored."),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Also retry videos that failed to decode before."
    ),
    executor: str = typer.Option("auto", help="auto, local or ray."),
    workers: int = typer.Option(1, help="Parallel workers (Ray actors)."),
    ray_address: str | None = typer.Option(None, help="Ray cluster address (or RAY_ADDRESS)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code"),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Index videos into long-term memories (skips what the store already holds)."""
    import dataclasses
    import json
    import sys

    from videomem.jobs.index import IndexJob, run_index
    from videomem.jobs.progress import PlainReporter, RichReporter, failure_line
    from videomem.pipeline.errors import ConfigError, VideomemError
    from videomem.pipeline.types import DecodeConfig, EncoderConfig, MemoryConfig

    if fps is not None and frames is not None:
        raise _fail_usage("--fps and --frames are mutually exclusive")
    paths = list(paths or [])
    if not paths and from_list is None:
        raise _fail_usage("give video files/folders or --from-list FILE")
    missing = [str(p) for p in [*paths, *([from_list] if from_list else [])] if not p.exists()]
    if missing:
        raise _fail_usage(f"no such file or folder: {', '.join(missing)}")
    try:
        window = {"start_s": start, "end_s": end, "aspect": aspect}
        if frames is not None:
            decode_cfg = DecodeConfig(fps=None, num_frames=frames, **window)
        else:
            decode_cfg = DecodeConfig(fps=1.0 if fps is None else fps, **window)
        options = _parse_options(encoder_option)
        memory_cfg = MemoryConfig.preset(memory_preset)
        overrides = {
            k: v
            for k, v in (("long_term_len", long_term_len), ("short_term_len", short_term_len))
            if v is not None
        }
        if overrides:
            memory_cfg = dataclasses.replace(memory_cfg, **overrides)
        if executor not in ("auto", "local", "ray"):
            raise ConfigError(f"unknown executor {executor!r}; choose auto, local or ray")
        job = IndexJob(
            paths=[str(p) for p in paths],
            store=store,
            encoder=EncoderConfig(
                model=model,
                device=device,
                dtype=dtype,
                batch_size=batch_size,
                trust_remote_code=trust_remote_code,
                options=options,
            ),
            decode=decode_cfg,
            memory=memory_cfg,
            force=force,
            retry_failed=retry_failed,
            executor=executor,  # type: ignore[arg-type]
            workers=workers,
            ray_address=ray_address,
            from_list=str(from_list) if from_list else None,
        )
    except VideomemError as e:
        raise _fail_usage(str(e)) from None
    on_terminal = not as_json and sys.stderr.isatty()
    reporter = RichReporter() if on_terminal else PlainReporter(sys.stderr, verb="indexed")
    try:
        summary = run_index(job, reporter)
    except VideomemError as e:  # job-level: bad model, store locked, no videos
        raise _fail_usage(str(e)) from None
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        typer.echo(summary.text())
        for f in summary.failures[:20]:
            typer.echo(f"  failed: {failure_line(f['uri'], f['error'])}")
        if summary.failed > 20:
            more = summary.failed - 20
            typer.echo(f"  … and {more} more: videomem ls --store {summary.store} --status failed")
    if summary.all_failed:
        raise typer.Exit(1)


@app.command("ls")
def ls_(
    store: str = typer.Option("videomem-store", help="Store directory or LanceDB URI."),
    status: str | None = typer.Option(None, help="Only 'indexed' or 'failed'."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON rows."),
) -> None:
    """List stored videos with their status and error."""
    import json

    from videomem.memory.store import Store
    from videomem.pipeline.errors import VideomemError

    try:
        with Store(store) as st:
            records = st.list_videos(status)  # type: ignore[arg-type]
    except VideomemError as e:
        raise _fail_usage(str(e)) from None
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in records], indent=2))
        return
    typer.echo(f"{'video_id':16}  {'status':8} {'slots':>5} {'frames':>7} {'duration':>9}  uri")
    for r in records:
        dur = f"{r.duration_s:.1f}s" if r.duration_s is not None else "-"
        typer.echo(
            f"{r.video_id[:16]:16}  {r.status:8} {r.slots:>5} {r.frames_sampled:>7} {dur:>9}  {r.uri}"
        )
        if r.error:
            typer.echo(f"{'':18}error: {r.error.splitlines()[0]}")
    n_ok = sum(r.status == "indexed" for r in records)
    typer.echo(f"{len(records)} video(s): {n_ok} indexed, {len(records) - n_ok} failed")


@app.command()
def show(
    video_id: str = typer.Argument(..., help="Video id (a unique prefix is enough)."),
    store: str = typer.Option("videomem-store", help="Store directory or LanceDB URI."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    plot: Path | None = typer.Option(None, help="Draw the slots along the timeline to this PNG."),
) -> None:
    """Print a video's memory slots (start, end, size) and captions; --plot draws them."""
    import json

    from videomem.memory.store import Store
    from videomem.pipeline.errors import VideomemError
    from videomem.qa.timeline import span_text

    try:
        with Store(store) as st:
            vid = st.resolve_video_id(video_id)
            mem = None
            rec = st.latest(vid)  # the memory a reader would load, else the latest failure
            if rec.status == "indexed":
                mem = st.load_memory(
                    vid, encoder_fingerprint=rec.encoder_fingerprint, config_hash=rec.config_hash
                )
            captions = st.captions(vid)
    except VideomemError as e:
        raise _fail_usage(str(e)) from None
    slots = []
    if mem is not None:
        slots = [
            {"slot": i, "start_s": float(s), "end_s": float(e), "size": int(z)}
            for i, (s, e, z) in enumerate(
                zip(mem.start_s.tolist(), mem.end_s.tolist(), mem.sizes.tolist(), strict=True)
            )
        ]
    if plot is not None and mem is not None:
        from videomem.jobs.plot import plot_slots

        try:
            plot_slots(rec, slots, plot)
        except VideomemError as e:
            raise _fail_usage(str(e)) from None
    if as_json:
        caps = [{**c, "created_at": str(c["created_at"])} for c in captions]
        typer.echo(json.dumps({"video": rec.to_dict(), "slots": slots, "captions": caps}, indent=2))
        return
    typer.echo(f"video    {rec.video_id}\nuri      {rec.uri}\nstatus   {rec.status}")
    if rec.error:
        typer.echo(f"error    {rec.error}")
    typer.echo(f"encoder  {rec.encoder_fingerprint}\nconfig   {rec.config_hash}")
    if mem is not None:
        n, d = tuple(mem.tokens.shape[1:])
        typer.echo(f"memory   {len(mem)} slots x {n} x {d} tokens from {rec.frames_sampled} frames")
        if rec.stored_bytes is not None:
            per_min = rec.bytes_per_minute
            rate = f" ({per_min / 1024:.1f} KiB per minute of video)" if per_min else ""
            typer.echo(f"stored   {rec.stored_bytes / 1024:.1f} KiB{rate}")
        typer.echo(f"{'slot':>5} {'start_s':>9} {'end_s':>9} {'size':>5}")
        for s in slots:
            typer.echo(f"{s['slot']:>5} {s['start_s']:>9.2f} {s['end_s']:>9.2f} {s['size']:>5}")
    for c in captions:  # the text timeline (tags, dense captions) after global captions
        typer.echo(f"caption  {c['kind']:6} {span_text(c['start_s'], c['end_s'])}  {c['text']}")
    if plot is not None and mem is not None:
        typer.echo(f"plot     {plot}")


@app.command()
def export(
    out_dir: Path = typer.Argument(..., help="Folder for videos.parquet and memories.parquet."),
    store: str = typer.Option("videomem-store", help="Store directory or LanceDB URI."),
) -> None:
    """Export the stored videos and memories as plain Parquet, for any other engine."""
    from videomem.memory.store import Store
    from videomem.pipeline.errors import VideomemError

    try:
        with Store(store) as st:
            paths = st.export(out_dir)
    except VideomemError as e:
        raise _fail_usage(str(e)) from None
    for name, path in paths.items():
        typer.echo(f"{name:9} {path}")


@app.command()
def probe(
    paths: list[Path] = typer.Argument(..., help="Video files and/or folders (walked)."),
    fps: float = typer.Option(1.0, help="Frames per second to sample while decoding."),
    frames: int | None = typer.Option(None, help="Sample exactly N frames instead."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per video."),
) -> None:
    """Probe and decode videos: what ffmpeg sees and how fast it decodes.

    A broken video prints its reason and the command goes on; exit 1 only if all failed.
    """
    import json

    from videomem.pipeline.decode import check_video
    from videomem.pipeline.errors import ConfigError
    from videomem.pipeline.ffmpeg_choice import ffmpeg_info
    from videomem.pipeline.files import iter_video_files
    from videomem.pipeline.types import DecodeConfig

    try:
        config = DecodeConfig(fps=fps, num_frames=frames)
    except ConfigError as e:
        raise _fail_usage(str(e)) from None
    binary = ffmpeg_info()
    if not as_json:
        typer.echo(
            f"ffmpeg {binary['version']} ({binary['source']}: {binary['reason']})  {binary['path']}"
            if "path" in binary
            else f"ffmpeg: {binary['error']}"
        )
    rows = []
    for path in iter_video_files(paths):
        row = check_video(path, config)
        rows.append(row)
        if as_json:
            typer.echo(json.dumps({**row, "ffmpeg": binary}))
        elif row["ok"]:
            typer.echo(
                f"{row['video_id']}  {row['duration_s']:.2f}s  {row['fps']:.3f}fps  "
                f"{row['width']}x{row['height']}  {row['codec']}  rot={row['rotation']}  "
                f"frames={row['frames']}  {row['decode_fps']:.1f} frames/s  {path}"
            )
        else:
            typer.echo(f"FAILED  {path}: {row['error']}")
    if not as_json:
        typer.echo(f"{len(rows)} video(s): {sum(r['ok'] for r in rows)} ok")
    if not rows or not any(r["ok"] for r in rows):
        raise typer.Exit(1)


from videomem.jobs import cli_qa, cli_timeline  # noqa: E402, F401, I001  (register ask, qa, caption; tag, models, eval)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

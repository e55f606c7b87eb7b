"""The ``videomem`` command line.

Commands only build config objects and hand them to library code (``pipeline``,
``memory``, ``jobs.index`` …); nothing here holds algorithm logic, so everything a
command does is importable and testable without the CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from videomem.memory.schema import VideoRecord
    from videomem.memory.store import Store

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


_STORE = typer.Option("videomem-store", help="Store directory or LanceDB URI.")


def _fail_usage(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _print_summary(summary: Any, as_json: bool) -> None:
    """A bulk job's summary: JSON, or its text line and up to 20 failures."""
    import json

    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        typer.echo(summary.text())
        for f in summary.failures[:20]:
            typer.echo(f"  failed: {f.splitlines()[0]}")


def _parse_options(items: list[str], what: str = "encoder option") -> dict[str, object]:
    """KEY=VALUE strings -> dict; values are JSON when they parse (numbers, true,
    null), else plain strings."""
    import json

    from videomem.pipeline.errors import ConfigError

    out: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} {item!r} is not KEY=VALUE")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _storage_options(items: list[str]) -> dict[str, str]:
    """--storage-option KEY=VALUE strings -> LanceDB storage options (all strings)."""
    from videomem.pipeline.errors import ConfigError

    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"storage option {item!r} is not KEY=VALUE")
        out[key] = value
    return out


_STORAGE_OPTION_HELP = (
    "LanceDB storage option KEY=VALUE for an object-store URI, repeatable "
    "(aws_endpoint, aws_region, aws_access_key_id, allow_http …; AWS_* env vars work too)."
)


_STORAGE = typer.Option([], "--storage-option", help=_STORAGE_OPTION_HELP)


def _open_store(store: str, storage_option: list[str]) -> Store:
    from videomem.memory.store import Store

    return Store(store, storage_options=_storage_options(storage_option))


@app.command()
def index(
    paths: list[Path] = typer.Argument(None, help="Video files and/or folders (walked)."),
    store: str = _STORE,
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
    sample: str = typer.Option(
        "exact", help="exact (the --fps/--frames grid) or keyframes (at most --fps per second)."
    ),
    decode_device: str = typer.Option("cpu", help="cpu, or cuda (NVDEC; falls back to the CPU)."),
    decoder: str = typer.Option(
        "ffmpeg",
        help="ffmpeg, or torchcodec (in process; with --decode-device cuda the frames stay "
        "on the GPU). Falls back to ffmpeg where torchcodec cannot run.",
    ),
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
    memory_preset: str = typer.Option(
        "default",
        help="Memory config preset: default (= adaptive), moviechat, moviechat_reference, mbc.",
    ),
    long_term_len: int | None = typer.Option(None, help="Override: long-term memory slots."),
    short_term_len: int | None = typer.Option(None, help="Override: short-term buffer frames."),
    threshold: float | None = typer.Option(
        None, help="Override (adaptive only): merge adjacent slots at least this similar."
    ),
    token_dtype: str = typer.Option(
        "float16", help="How tokens are stored: float16 (exact) or int8 (half the bytes)."
    ),
    token_scale: str | None = typer.Option(
        None, help="int8 only: one scale per token (default) or per slot."
    ),
    force: bool = typer.Option(False, "--force", help="Re-index videos already stored."),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Also retry videos that failed to decode before."
    ),
    executor: str = typer.Option("auto", help="auto, local or ray."),
    workers: int = typer.Option(1, help="Parallel workers (Ray actors)."),
    ray_address: str | None = typer.Option(None, help="Ray cluster address (or RAY_ADDRESS)."),
    storage_option: list[str] = _STORAGE,
    lease_ttl: float = typer.Option(
        30.0, help="Object stores: seconds after which a killed job's writer lease expires."
    ),
    wait_for_writer: float = typer.Option(
        0.0, help="Seconds to wait for another job writing to the same store (default: refuse)."
    ),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code"),
    compile_: bool = typer.Option(
        False, "--compile", help="torch.compile the encoder (kept if it matches eager)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Index videos into long-term memories (skips what the store already holds)."""
    import dataclasses
    import json
    import sys

    from videomem.encoders.config import EncoderConfig
    from videomem.jobs.index import IndexJob, run_index
    from videomem.jobs.progress import PlainReporter, RichReporter, failure_line
    from videomem.memory.config import MemoryConfig
    from videomem.memory.lease import LeaseConfig
    from videomem.pipeline.errors import ConfigError, VideomemError
    from videomem.pipeline.types import DecodeConfig

    if fps is not None and frames is not None:
        raise _fail_usage("--fps and --frames are mutually exclusive")
    paths = list(paths or [])
    if not paths and from_list is None:
        raise _fail_usage("give video files/folders or --from-list FILE")
    missing = [str(p) for p in [*paths, *([from_list] if from_list else [])] if not p.exists()]
    if missing:
        raise _fail_usage(f"no such file or folder: {', '.join(missing)}")
    try:
        window = {
            "start_s": start,
            "end_s": end,
            "sample": sample,
            "device": decode_device,
            "decoder": decoder,
            "aspect": aspect,
        }
        if frames is not None:
            decode_cfg = DecodeConfig(fps=None, num_frames=frames, **window)
        else:
            decode_cfg = DecodeConfig(fps=1.0 if fps is None else fps, **window)
        options = _parse_options(encoder_option)
        memory_cfg = MemoryConfig.preset(memory_preset)
        if threshold is not None and memory_cfg.method != "adaptive":
            raise ConfigError(
                f"--threshold applies to the adaptive method only "
                f"(preset {memory_preset!r} is {memory_cfg.method!r})"
            )
        if token_scale is not None and token_dtype != "int8":
            raise ConfigError("--token-scale applies to --token-dtype int8 only")
        overrides = {
            k: v
            for k, v in (
                ("long_term_len", long_term_len),
                ("short_term_len", short_term_len),
                ("threshold", threshold),
                ("token_dtype", token_dtype),
                ("token_scale", token_scale),
            )
            if v is not None
        }
        memory_cfg = dataclasses.replace(memory_cfg, **overrides)  # validates them
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
                compile=compile_,
            ),
            decode=decode_cfg,
            memory=memory_cfg,
            force=force,
            retry_failed=retry_failed,
            executor=executor,  # type: ignore[arg-type]
            workers=workers,
            ray_address=ray_address,
            from_list=str(from_list) if from_list else None,
            storage_options=_storage_options(storage_option),
            lease=LeaseConfig(ttl_s=lease_ttl, wait_s=wait_for_writer),
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
    store: str = _STORE,
    storage_option: list[str] = _STORAGE,
    status: str | None = typer.Option(None, help="Only 'indexed' or 'failed'."),
    model: str | None = typer.Option(None, help="Only videos indexed with this --model."),
    limit: int = typer.Option(100, help="Videos per page (0: all)."),
    offset: int = typer.Option(0, help="Skip this many videos (the next page)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON rows."),
) -> None:
    """List stored videos with their status and error, a page at a time."""
    import json

    from videomem.pipeline.errors import VideomemError

    try:
        with _open_store(store, storage_option) as st:
            records = st.list_videos(
                status,  # type: ignore[arg-type]
                model=model,
                limit=limit or None,
                offset=offset,
            )
            if not as_json:
                n_ok = st.count_videos("indexed", model=model) if status != "failed" else 0
                n_bad = st.count_videos("failed", model=model) if status != "indexed" else 0
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
    total = n_ok + n_bad
    line = f"{total} video(s): {n_ok} indexed, {n_bad} failed"
    if records and (offset or offset + len(records) < total):
        line += f"; showing {offset + 1}-{offset + len(records)}"
        if offset + len(records) < total:
            line += f" (next page: --offset {offset + len(records)})"
    typer.echo(line)


@app.command()
def show(
    video_id: str = typer.Argument(..., help="Video id (a unique prefix is enough)."),
    store: str = _STORE,
    storage_option: list[str] = _STORAGE,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    plot: Path | None = typer.Option(None, help="Draw the slots along the timeline to this PNG."),
) -> None:
    """Print a video's memory slots (start, end, size) and captions; --plot draws them."""
    import json

    from videomem.jobs.progress import decode_line
    from videomem.pipeline.errors import VideomemError
    from videomem.qa.timeline import span_text

    try:
        with _open_store(store, storage_option) as st:
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
        from videomem.jobs.plot import plot_slots, plot_timeline

        try:
            if mem.thumbnails is not None:
                plot_timeline(rec, slots, mem.thumbnails, captions, plot)
            else:  # a memory stored before thumbnails existed
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
    if rec.decode_device is not None:
        typer.echo(f"decode   {decode_line(rec)}")
    if mem is not None:
        n, d = tuple(mem.tokens.shape[1:])
        typer.echo(f"memory   {len(mem)} slots x {n} x {d} tokens from {rec.frames_sampled} frames")
        if rec.stored_bytes is not None:
            per_min = rec.bytes_per_minute
            rate = f" ({per_min / 1024:.1f} KiB per minute of video)" if per_min else ""
            typer.echo(f"stored   {rec.stored_bytes / 1024:.1f} KiB{rate}")
        typer.echo(f"tokens   {_token_encoding(rec)}")
        typer.echo(f"{'slot':>5} {'start_s':>9} {'end_s':>9} {'size':>5}")
        for s in slots:
            typer.echo(f"{s['slot']:>5} {s['start_s']:>9.2f} {s['end_s']:>9.2f} {s['size']:>5}")
    for c in captions:  # the text timeline (tags, dense captions) after global captions
        typer.echo(f"caption  {c['kind']:6} {span_text(c['start_s'], c['end_s'])}  {c['text']}")
    if plot is not None and mem is not None:
        typer.echo(f"plot     {plot}")


def _token_encoding(rec: VideoRecord) -> str:
    """How a video's tokens are stored, and what int8 cost (``show``)."""
    if rec.token_dtype != "int8":
        return f"{rec.token_dtype or 'float16'} (exact)"
    text = f"int8, per-{rec.token_scale or 'token'} scale"
    rel, cos = rec.token_rel_rmse, rec.token_min_cosine
    if rel is not None and cos is not None:
        text += f"; error: relative RMS {rel:.2%}, worst token cosine {cos:.4f}"
    return text


@app.command()
def export(
    out_dir: Path = typer.Argument(..., help="Folder for one <table>.parquet per table."),
    store: str = _STORE,
    tokens: bool = typer.Option(
        True, "--tokens/--no-tokens", help="Include the memories' token bytes (most of a store)."
    ),
    storage_option: list[str] = _STORAGE,
) -> None:
    """Export every table (videos, memories, captions, answers) as plain Parquet."""
    from videomem.pipeline.errors import VideomemError

    try:
        with _open_store(store, storage_option) as st:
            paths = st.export(out_dir, tokens=tokens)
    except VideomemError as e:
        raise _fail_usage(str(e)) from None
    for name, path in paths.items():
        typer.echo(f"{name:9} {path}")


@app.command()
def repair(
    store: str = _STORE,
    storage_option: list[str] = _STORAGE,
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list the damaged files."),
) -> None:
    """Find damaged data files; drop them and mark the videos they held for re-indexing."""
    from videomem.memory.repair import repair as repair_store
    from videomem.memory.store import Store
    from videomem.pipeline.errors import VideomemError

    try:
        options = _storage_options(storage_option)
        with Store(store, writer=True, storage_options=options) as st:
            report = repair_store(st, dry_run=dry_run)
    except VideomemError as e:
        raise _fail_usage(str(e)) from None
    for d in report.damage:
        typer.echo(f"damaged  {d.text()}")
    if not report.damage:
        typer.echo("no damaged data file found")
    elif dry_run:
        typer.echo(f"{len(report.damage)} damaged fragment(s); run without --dry-run to repair")
    else:
        typer.echo(
            f"dropped {len(report.damage)} fragment(s); {len(report.videos_marked)} video(s) "
            f"marked for re-indexing, {report.orphans_removed} orphan row(s) removed; "
            "the next `videomem index` re-indexes them"
        )


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


# registers ask, qa, caption; tag, models, eval; search
from videomem.jobs import cli_qa, cli_search, cli_timeline  # noqa: E402, F401, I001


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""The store's own commands: ``ls``, ``show``, ``export`` and ``repair``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import typer
from videomem.jobs import api
from videomem.jobs.cli.options import StoreOptions, command, json_flag, usage_errors


@dataclasses.dataclass(frozen=True)
class LsOptions(StoreOptions):
    status: str | None = typer.Option(None, help="Only 'indexed' or 'failed'.")
    model: str | None = typer.Option(None, help="Only videos indexed with this --model.")
    limit: int = typer.Option(100, help="Videos per page (0: all).")
    offset: int = typer.Option(0, help="Skip this many videos (the next page).")
    as_json: bool = json_flag("Print JSON rows.")


@command
def ls(o: LsOptions) -> None:
    """List stored videos with their status and error, a page at a time."""
    with usage_errors():
        page = api.ls(o.store, o.status, o.model, o.limit, o.offset, o.storage_options)  # type: ignore[arg-type]
    if o.as_json:
        typer.echo(json.dumps([r.to_dict() for r in page.records], indent=2))
        return
    typer.echo(f"{'video_id':16}  {'status':8} {'slots':>5} {'frames':>7} {'duration':>9}  uri")
    for r in page.records:
        dur = f"{r.duration_s:.1f}s" if r.duration_s is not None else "-"
        typer.echo(
            f"{r.video_id[:16]:16}  {r.status:8} {r.slots:>5} {r.frames_sampled:>7} {dur:>9}  {r.uri}"
        )
        if r.error:
            typer.echo(f"{'':18}error: {r.error.splitlines()[0]}")
    typer.echo(_page_line(page))


def _page_line(page: api.VideoPage) -> str:
    offset, shown, total = page.offset, len(page.records), page.total
    line = f"{total} video(s): {page.indexed} indexed, {page.failed} failed"
    if page.records and (offset or offset + shown < total):
        line += f"; showing {offset + 1}-{offset + shown}"
        if offset + shown < total:
            line += f" (next page: --offset {offset + shown})"
    return line


@dataclasses.dataclass(frozen=True)
class ShowOptions(StoreOptions):
    video_id: str = typer.Argument(
        ..., help="Video id (a unique prefix is enough), the indexed file, or its file name."
    )
    as_json: bool = json_flag("Print JSON.")
    plot: Path | None = typer.Option(None, help="Draw the slots along the timeline to this PNG.")


@command
def show(o: ShowOptions) -> None:
    """Print a video's memory slots (start, end, size), captions and transcript; --plot
    draws them."""
    from videomem.qa.timeline import span_text

    with usage_errors():
        view = api.show(o.store, o.video_id, o.plot, o.storage_options)
    if o.as_json:
        caps = [{**c, "created_at": str(c["created_at"])} for c in view.captions]
        out = {"video": view.record.to_dict(), "slots": view.slots, "captions": caps}
        out["kept_fraction"] = view.kept_fraction
        typer.echo(json.dumps({**out, "transcript": _transcript_dict(view)}, indent=2))
        return
    for line in _record_lines(view):
        typer.echo(line)
    for c in view.captions:  # the text timeline (tags, dense captions) after global captions
        typer.echo(f"caption  {c['kind']:6} {span_text(c['start_s'], c['end_s'])}  {c['text']}")
    for line in _transcript_lines(view):
        typer.echo(line)
    if view.plot is not None:
        typer.echo(f"plot     {view.plot}")


def _transcript_dict(view: api.VideoView) -> dict[str, Any] | None:
    if view.transcript is None:
        return None
    return {**dataclasses.asdict(view.transcript), "created_at": str(view.transcript.created_at)}


def _transcript_lines(view: api.VideoView) -> list[str]:
    """``show``'s speech: the transcript's model, status and language, then its lines."""
    from videomem.qa.timeline import span_text

    t = view.transcript
    if t is None:
        return []
    if t.status == "no_audio":
        return [f"speech   {t.model}  no audio"]
    if t.status == "failed":
        return [f"speech   {t.model}  failed: {t.error}"]
    head = f"speech   {t.model}  done  {t.language or '?'}  {len(t.segments)} segments"
    return [head] + [
        f'speech   {span_text(s.start_s, s.end_s)}  "{s.text.strip()}"' for s in t.segments
    ]


def _record_lines(view: api.VideoView) -> list[str]:
    """``show``'s text: the record, then the memory's slots."""
    from videomem.jobs.progress import decode_line

    rec = view.record
    lines = [f"video    {rec.video_id}", f"uri      {rec.uri}", f"status   {rec.status}"]
    if rec.error:
        lines.append(f"error    {rec.error}")
    lines += [f"encoder  {rec.encoder_fingerprint}", f"config   {rec.config_hash}"]
    if rec.decode_device is not None:
        lines.append(f"decode   {decode_line(rec)}")
    if view.token_shape is None:
        return lines
    n, d = view.token_shape
    lines.append(
        f"memory   {len(view.slots)} slots x {n} x {d} tokens from {rec.frames_sampled} frames"
    )
    if rec.stored_bytes is not None:
        per_min = rec.bytes_per_minute
        rate = f" ({per_min / 1024:.1f} KiB per minute of video)" if per_min else ""
        lines.append(f"stored   {rec.stored_bytes / 1024:.1f} KiB{rate}")
    lines.append(f"tokens   {_token_encoding(rec)}")
    dropped = view.kept_fraction is not None
    if dropped:
        tau = rec.config.memory.token_tau
        lines.append(f"dropping {view.kept_fraction:.1%} of slot tokens stored (token_tau {tau})")
    lines.append(f"{'slot':>5} {'start_s':>9} {'end_s':>9} {'size':>5}" + " tokens" * dropped)
    for s in view.slots:
        row = f"{s['slot']:>5} {s['start_s']:>9.2f} {s['end_s']:>9.2f} {s['size']:>5}"
        lines.append(row + (f" {s['tokens']:>6}" if dropped else ""))
    return lines


def _token_encoding(rec: Any) -> str:
    """How a video's tokens are stored, and what int8 cost."""
    if rec.token_dtype != "int8":
        return f"{rec.token_dtype or 'float16'} (exact)"
    text = f"int8, per-{rec.token_scale or 'token'} scale"
    rel, cos = rec.token_rel_rmse, rec.token_min_cosine
    if rel is not None and cos is not None:
        text += f"; error: relative RMS {rel:.2%}, worst token cosine {cos:.4f}"
    return text


@dataclasses.dataclass(frozen=True)
class ExportOptions(StoreOptions):
    out_dir: Path = typer.Argument(..., help="Folder for one <table>.parquet per table.")
    tokens: bool = typer.Option(
        True, "--tokens/--no-tokens", help="Include the memories' token bytes (most of a store)."
    )


@command
def export(o: ExportOptions) -> None:
    """Export every table (videos, memories, captions, answers) as plain Parquet."""
    with usage_errors():
        paths = api.export(o.store, o.out_dir, o.tokens, o.storage_options)
    for name, path in paths.items():
        typer.echo(f"{name:9} {path}")


@dataclasses.dataclass(frozen=True)
class RepairOptions(StoreOptions):
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list the damaged files.")


@command
def repair(o: RepairOptions) -> None:
    """Find damaged data files; drop them and mark the videos they held for re-indexing."""
    with usage_errors():
        report = api.repair(o.store, o.dry_run, o.storage_options)
    for d in report.damage:
        typer.echo(f"damaged  {d.text()}")
    if not report.damage:
        typer.echo("no damaged data file found")
    elif o.dry_run:
        typer.echo(f"{len(report.damage)} damaged fragment(s); run without --dry-run to repair")
    else:
        typer.echo(
            f"dropped {len(report.damage)} fragment(s); {len(report.videos_marked)} video(s) "
            f"marked for re-indexing, {report.orphans_removed} orphan row(s) removed; "
            "the next `videomem index` re-indexes them"
        )

"""``videomem index`` and ``videomem probe``: videos in, memories (or a decode check) out."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import typer
from videomem.jobs import api
from videomem.jobs.cli.options import (
    ASROptions,
    ExecutorOptions,
    ModelDeviceOptions,
    StoreOptions,
    command,
    json_flag,
    json_values,
    usage_errors,
)
from videomem.pipeline.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class IndexOptions(StoreOptions, ExecutorOptions, ModelDeviceOptions, ASROptions):
    paths: list[Path] = typer.Argument(None, help="Video files and/or folders (walked).")
    from_list: Path | None = typer.Option(
        None, "--from-list", help="A text file naming one video path per line."
    )
    model: str = typer.Option(
        ..., help="Hugging Face hub id or checkpoint directory; 'tiny' = random smoke model."
    )
    fps: float | None = typer.Option(None, help="Frames per second to sample (default 1).")
    frames: int | None = typer.Option(None, help="Sample exactly N frames per video instead.")
    start: float | None = typer.Option(None, help="Index from this time (seconds).")
    end: float | None = typer.Option(None, help="Index up to this time (seconds).")
    sample: str = typer.Option(
        "exact", help="exact (the --fps/--frames grid) or keyframes (at most --fps per second)."
    )
    decode_device: str = typer.Option("cpu", help="cpu, or cuda (NVDEC; falls back to the CPU).")
    decoder: str = typer.Option(
        "ffmpeg",
        help="ffmpeg, or torchcodec (in process; with --decode-device cuda the frames stay "
        "on the GPU). Falls back to ffmpeg where torchcodec cannot run.",
    )
    aspect: str = typer.Option(
        "pad", help="Fit other aspect ratios by pad (letterbox), crop (centre) or stretch."
    )
    encoder_option: list[str] = typer.Option(
        [],
        "--encoder-option",
        "-o",
        help="Family option KEY=VALUE, repeatable (CLIP/SigLIP: layer=-2, pool=4; "
        "BLIP-2: tokens=projected). Part of the encoder fingerprint.",
    )
    batch_size: int = typer.Option(32, help="Frames per encoder forward pass.")
    memory_preset: str | None = typer.Option(
        None,
        help="Memory config preset: default (= adaptive), moviechat, moviechat_reference, mbc "
        "(unset: the one the checkpoint names, e.g. MovieChat's moviechat_reference, else "
        "default).",
    )
    long_term_len: int | None = typer.Option(None, help="Override: long-term memory slots.")
    short_term_len: int | None = typer.Option(None, help="Override: short-term buffer frames.")
    threshold: float | None = typer.Option(
        None,
        help="Override (adaptive only): merge adjacent slots at least this similar "
        "(default 0.85, lowest per-position similarity).",
    )
    max_span: float | None = typer.Option(
        None,
        help="Override (adaptive only): under budget a slot spans at most this many "
        "seconds (default 20); 0 = no limit.",
    )
    keep_events: bool = typer.Option(
        False,
        "--keep-events",
        help="Adaptive only: a merge the budget forces never folds a short event (<= 3 "
        "frames that interrupt a scene) away while another pair can merge.",
    )
    token_dtype: str = typer.Option(
        "float16", help="How tokens are stored: float16 (exact) or int8 (half the bytes)."
    )
    token_scale: str | None = typer.Option(
        None, help="int8 only: one scale per token (default) or per slot."
    )
    token_tau: float | None = typer.Option(
        None,
        help="Token dropping: a slot stores only the token positions whose cosine "
        "distance to the last kept token there exceeds T (0-2; default 0 = keep all).",
    )
    force: bool = typer.Option(False, "--force", help="Re-index videos already stored.")
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Also retry videos that failed to decode before."
    )
    lease_ttl: float = typer.Option(
        30.0, help="Object stores: seconds after which a killed job's writer lease expires."
    )
    wait_for_writer: float = typer.Option(
        0.0, help="Seconds to wait for another job writing to the same store (default: refuse)."
    )
    speech: bool = typer.Option(
        False,
        "--speech",
        help="Also transcribe each video's speech (as `videomem transcribe`), while its "
        "frames decode and encode.",
    )
    asr_device: str | None = typer.Option(
        None, help="--speech: auto (GPU float16 if present, else CPU int8), cpu, cuda:N."
    )
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code")
    compile_: bool = typer.Option(
        False, "--compile", help="torch.compile the encoder (kept if it matches eager)."
    )
    as_json: bool = json_flag()

    def job(self) -> Any:
        """The :class:`~videomem.jobs.index.IndexJob` (validated: ConfigError)."""
        from videomem.encoders.config import EncoderConfig
        from videomem.jobs.index import IndexJob
        from videomem.jobs.index_config import check_inputs, decode_config, memory_config
        from videomem.memory.store import LeaseConfig

        if self.fps is not None and self.frames is not None:
            decode_config(self.fps, self.frames)  # the first check users meet
        asr_given = self.asr_model != "whisper-base" or self.language or self.word_times
        if not self.speech and (asr_given or self.asr_device):
            raise ConfigError(
                "--asr-model, --language, --word-times and --asr-device apply with --speech"
            )
        paths = list(self.paths or [])
        check_inputs(paths, self.from_list)
        return IndexJob(
            paths=[str(p) for p in paths],
            encoder=EncoderConfig(
                model=self.model,
                device=self.device,
                dtype=self.dtype,
                batch_size=self.batch_size,
                trust_remote_code=self.trust_remote_code,
                options=json_values(self.encoder_option, "encoder option"),
                compile=self.compile_,
            ),
            decode=decode_config(
                self.fps,
                self.frames,
                start=self.start,
                end=self.end,
                sample=self.sample,
                device=self.decode_device,
                decoder=self.decoder,
                aspect=self.aspect,
            ),  # fmt: skip
            memory=memory_config(
                self.memory_preset,
                model=self.model,
                long_term_len=self.long_term_len,
                short_term_len=self.short_term_len,
                threshold=self.threshold,
                max_span=self.max_span,
                keep_events=self.keep_events,
                token_dtype=self.token_dtype,
                token_scale=self.token_scale,
                token_tau=self.token_tau,
            ),  # fmt: skip
            force=self.force,
            retry_failed=self.retry_failed,
            from_list=str(self.from_list) if self.from_list else None,
            lease=LeaseConfig(ttl_s=self.lease_ttl, wait_s=self.wait_for_writer),
            speech=self.asr(self.asr_device) if self.speech else None,
            **self.where(),
            **self.execution(),
        )


@command
def index(o: IndexOptions) -> None:
    """Index videos into long-term memories (skips what the store already holds)."""
    from videomem.jobs.progress import PlainReporter, RichReporter

    with usage_errors():
        job = o.job()
    on_terminal = not o.as_json and sys.stderr.isatty()
    reporter = RichReporter() if on_terminal else PlainReporter(sys.stderr, verb="indexed")
    with usage_errors():  # job-level: bad model, store locked, no videos
        summary = api.index(job, reporter)
    if o.as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        _print_index_summary(summary)
    if summary.all_failed:
        raise typer.Exit(1)


def _print_index_summary(summary: Any) -> None:
    from videomem.jobs.progress import failure_line

    typer.echo(summary.text())
    for f in summary.failures[:20]:
        typer.echo(f"  failed: {failure_line(f['uri'], f['error'])}")
    if summary.failed > 20:
        more = summary.failed - 20
        typer.echo(f"  … and {more} more: videomem ls --store {summary.store} --status failed")


@dataclasses.dataclass(frozen=True)
class ProbeOptions:
    paths: list[Path] = typer.Argument(..., help="Video files and/or folders (walked).")
    fps: float = typer.Option(1.0, help="Frames per second to sample while decoding.")
    frames: int | None = typer.Option(None, help="Sample exactly N frames instead.")
    as_json: bool = json_flag("One JSON object per video.")


@command
def probe(o: ProbeOptions) -> None:
    """Probe and decode videos: what ffmpeg sees and how fast it decodes.

    A broken video prints its reason and the command goes on; exit 1 only if all failed.
    """
    from videomem.pipeline.ffmpeg_choice import ffmpeg_info
    from videomem.pipeline.types import DecodeConfig

    with usage_errors():
        config = DecodeConfig(fps=o.fps, num_frames=o.frames)
    binary = ffmpeg_info()
    if not o.as_json:
        typer.echo(_binary_line(binary))
    rows = []
    for row in api.probe(o.paths, config):
        rows.append(row)
        typer.echo(json.dumps({**row, "ffmpeg": binary}) if o.as_json else _probe_line(row))
    if not o.as_json:
        typer.echo(f"{len(rows)} video(s): {sum(r['ok'] for r in rows)} ok")
    if not rows or not any(r["ok"] for r in rows):
        raise typer.Exit(1)


def _binary_line(binary: dict[str, Any]) -> str:
    if "path" not in binary:
        return f"ffmpeg: {binary['error']}"
    return f"ffmpeg {binary['version']} ({binary['source']}: {binary['reason']})  {binary['path']}"


def _probe_line(row: dict[str, Any]) -> str:
    if not row["ok"]:
        return f"FAILED  {row['path']}: {row['error']}"
    return (
        f"{row['video_id']}  {row['duration_s']:.2f}s  {row['fps']:.3f}fps  "
        f"{row['width']}x{row['height']}  {row['codec']}  rot={row['rotation']}  "
        f"frames={row['frames']}  {row['decode_fps']:.1f} frames/s  {row['path']}"
    )

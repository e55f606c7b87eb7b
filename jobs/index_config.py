"""The index job's configs from what a user passes, validated before any work.

Design decisions:

* The rules that tie options together (``fps`` or ``frames``, ``threshold`` only for
  the adaptive method, ``token_scale`` only for int8 tokens, inputs that exist) live
  here, beside the job, not in the CLI: every caller (CLI, Ray entry point, a script)
  gets the same :class:`~videomem.pipeline.errors.ConfigError` with the same message.
* The messages name the CLI flags, because that is how most users meet them.
* Each config's own field checks stay in the config (``dataclasses.replace`` runs them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from videomem.memory.config import MemoryConfig
from videomem.pipeline.errors import ConfigError
from videomem.pipeline.types import DecodeConfig


def decode_config(
    fps: float | None = None,
    frames: int | None = None,
    *,
    start: float | None = None,
    end: float | None = None,
    sample: str = "exact",
    device: str = "cpu",
    decoder: str = "ffmpeg",
    aspect: str = "pad",
) -> DecodeConfig:
    """A :class:`DecodeConfig` sampling ``fps`` frames a second (default 1) or exactly
    ``frames`` frames, not both."""
    if fps is not None and frames is not None:
        raise ConfigError("--fps and --frames are mutually exclusive")
    window = {
        "start_s": start,
        "end_s": end,
        "sample": sample,
        "device": device,
        "decoder": decoder,
        "aspect": aspect,
    }
    if frames is not None:
        return DecodeConfig(fps=None, num_frames=frames, **window)
    return DecodeConfig(fps=1.0 if fps is None else fps, **window)


def memory_config(
    preset: str | None = None,
    *,
    model: str | None = None,
    long_term_len: int | None = None,
    short_term_len: int | None = None,
    threshold: float | None = None,
    max_span: float | None = None,
    token_dtype: str = "float16",
    token_scale: str | None = None,
    token_tau: float | None = None,
    keep_events: bool = False,
) -> MemoryConfig:
    """The ``preset`` :class:`MemoryConfig` with the given overrides (None: keep).
    Without a preset, the one ``model``'s checkpoint names for itself (MovieChat's:
    ``moviechat_reference``), else ``default``."""
    from videomem.encoders.registry import default_memory_preset

    if preset is None:
        preset = (default_memory_preset(model) if model else None) or "default"
    config = MemoryConfig.preset(preset)
    for flag, value in (
        ("--threshold", threshold),
        ("--max-span", max_span),
        ("--keep-events", keep_events or None),
    ):
        if value is not None and config.method != "adaptive":
            raise ConfigError(
                f"{flag} applies to the adaptive method only "
                f"(preset {preset!r} is {config.method!r})"
            )
    if token_scale is not None and token_dtype != "int8":
        raise ConfigError("--token-scale applies to --token-dtype int8 only")
    overrides: dict[str, Any] = {
        k: v
        for k, v in (
            ("long_term_len", long_term_len),
            ("short_term_len", short_term_len),
            ("threshold", threshold),
            ("token_dtype", token_dtype),
            ("token_scale", token_scale),
            ("token_tau", token_tau),
        )
        if v is not None
    }
    if keep_events:
        overrides["keep_events"] = True
    if max_span is not None:  # 0 turns the limit off (None is "not given" here)
        overrides["max_span_s"] = None if max_span == 0 else max_span
    return dataclasses.replace(config, **overrides)  # validates them


def check_inputs(paths: Sequence[str | Path], from_list: str | Path | None) -> None:
    """Inputs a user named must be given and exist (a job's own walk records a file
    that vanishes later as a failed video instead)."""
    if not paths and from_list is None:
        raise ConfigError("give video files/folders or --from-list FILE")
    named = [*paths, *([from_list] if from_list else [])]
    missing = [str(p) for p in named if not Path(p).exists()]
    if missing:
        raise ConfigError(f"no such file or folder: {', '.join(missing)}")

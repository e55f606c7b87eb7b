"""Tiny randomly initialised checkpoints of every supported family, for tests,
benchmarks and smoke runs.

Each builder creates the real architecture from transformers' own config classes
with tiny sizes, saves model + processor/tokenizer with ``save_pretrained`` (safetensors)
into a directory, and returns it, so tests load it through exactly the same
``load_encoder`` path as a user's real checkpoint. The weights are random: tokens are
meaningless, shapes and code paths are real. Seeds are fixed, so a builder makes the
same checkpoint every time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

TinyBuilder = Callable[[Path], Path]
TINY_BUILDERS: dict[str, TinyBuilder] = {}


def _tiny(family: str) -> Callable[[TinyBuilder], TinyBuilder]:
    def wrap(fn: TinyBuilder) -> TinyBuilder:
        TINY_BUILDERS[family] = fn
        return fn

    return wrap


def build_tiny(family: str, out_dir: str | Path) -> Path:
    """Build the tiny checkpoint of ``family`` into ``out_dir`` (created) and return it."""
    try:
        builder = TINY_BUILDERS[family]
    except KeyError:
        raise ValueError(f"no tiny builder for {family!r}; have {sorted(TINY_BUILDERS)}") from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return builder(out)


def tiny_checkpoint(family: str = "llava", cache_dir: str | Path | None = None) -> Path:
    """A cached tiny checkpoint (built once, then reused), e.g. for ``--model tiny``."""
    import os

    root = Path(cache_dir or os.environ.get("VIDEOMEM_CACHE", Path.home() / ".cache" / "videomem"))
    out = root / "tiny" / family
    if not (out / "config.json").exists():
        tmp = out.with_name(out.name + ".tmp")
        build_tiny(family, tmp)
        if out.exists():
            import shutil

            shutil.rmtree(out)
        tmp.rename(out)
    return out


# ------------------------------------------------------------------ CLIP, SigLIP, BLIP-2


# ------------------------------------------------------------------ LLaVA, LLaVA-OneVision, SmolVLM

"""Tiny randomly initialised checkpoints of every supported family, for tests,
benchmarks and smoke runs (``videomem index --model tiny``).

Each builder creates the real architecture from transformers' own config classes
with tiny sizes, saves model + processor/tokenizer with ``save_pretrained`` (safetensors)
into a directory, and returns it, so tests load it through exactly the same
``load_encoder`` path as a user's real checkpoint. The weights are random: tokens are
meaningless, shapes and code paths are real. Seeds are fixed, so a builder makes the
same checkpoint every time.

One module per family, as in ``encoders/`` itself (``contrastive``: CLIP and SigLIP,
``blip2``, ``llava``, ``smolvlm``, ``mobilenet``), the parts they share in ``parts``, and
one table of builders here. ``moviechat`` is the exception: it builds MovieChat-format
*inputs* (``.pth`` files with MovieChat's key names, a tiny Vicuna), which the
converter itself turns into a checkpoint, so it has no entry in the table. transformers is imported inside the builders, so importing
this package (``--model tiny`` resolving a name) stays cheap.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from videomem.encoders.testing import blip2, contrastive, llava, mobilenet, parts, smolvlm

TinyBuilder = Callable[[Path], Path]

#: family (a ``model_type`` of the registry) -> the builder of its tiny checkpoint
TINY_BUILDERS: dict[str, TinyBuilder] = {
    "clip": contrastive.build_tiny_clip,
    "siglip": contrastive.build_tiny_siglip,
    "blip2": blip2.build_tiny_blip2,
    "llava": llava.build_tiny_llava,
    "llava_onevision": llava.build_tiny_llava_onevision,
    "llava_next_video": llava.build_tiny_llava_next_video,
    "smolvlm": smolvlm.build_tiny_smolvlm,
    "idefics3": smolvlm.build_tiny_idefics3,
    "mobilenet_v2": mobilenet.build_tiny_mobilenet_v2,
}


def _sources(builder: TinyBuilder) -> list[Path]:
    """The source files a builder's checkpoint depends on: its module and ``parts``."""
    return [Path(str(sys.modules[builder.__module__].__file__)), Path(str(parts.__file__))]


def build_tiny(family: str, out_dir: str | Path) -> Path:
    """Build the tiny checkpoint of ``family`` into ``out_dir`` (created) and return it."""
    try:
        builder = TINY_BUILDERS[family]
    except KeyError:
        raise ValueError(f"no tiny builder for {family!r}; have {sorted(TINY_BUILDERS)}") from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return builder(out)


def tiny_cache_key(family: str) -> str:
    """What a cached tiny checkpoint depends on: the family, the source of its builder's
    module and of the shared parts it calls, and the transformers version that saved it.
    A changed builder or a transformers upgrade therefore builds a fresh checkpoint
    instead of silently reusing an old one."""
    import hashlib

    import transformers

    h = hashlib.sha256()
    h.update(family.encode())
    for source in _sources(TINY_BUILDERS[family]):
        h.update(source.read_bytes())
    h.update(transformers.__version__.encode())
    return h.hexdigest()[:12]


def tiny_checkpoint(family: str = "llava", cache_dir: str | Path | None = None) -> Path:
    """A cached tiny checkpoint (built once, then reused), e.g. for ``--model tiny``.

    Cached at ``<cache>/tiny/<family>-<key>/<family>`` with the key of
    :func:`tiny_cache_key`; the last folder is named by the family so fingerprints
    (which name a local checkpoint by its folder) read the same whatever the key.
    Safe when several processes (Ray actors) ask at once: each builds into its own
    temporary folder and renames it into place; a loser of that race drops its copy
    (the builders are seeded, so every copy is the same checkpoint).
    """
    import shutil
    import tempfile

    from videomem.pipeline.cache import cache_dir as default_cache_dir

    if family not in TINY_BUILDERS:
        raise ValueError(f"no tiny builder for {family!r}; have {sorted(TINY_BUILDERS)}")
    root = Path(cache_dir or default_cache_dir())
    out = root / "tiny" / f"{family}-{tiny_cache_key(family)}" / family
    if not (out / "config.json").exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{family}-", dir=out.parent))
        try:
            build_tiny(family, tmp)
            try:
                tmp.rename(out)
            except OSError:
                if not (out / "config.json").exists():  # not a lost race: a real error
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out

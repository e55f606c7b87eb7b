"""Encoder fingerprints: a stable string naming the exact encoder (same string <=>
same tokens), part of every stored memory's key."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from videomem.encoders.hf import LoadSettings


def checkpoint_fingerprint(
    checkpoint: str, config: Any, settings: LoadSettings, /, **choices: Any
) -> str:
    """:func:`fingerprint` of a loaded checkpoint: what the user passed, its config,
    the run dtype, its weights' identity (hub revision when known) and ``choices``."""
    return fingerprint(
        settings.source,
        config,
        settings.dtype,
        weights_identity(checkpoint, getattr(config, "_commit_hash", None)),
        **choices,
    )


def fingerprint(
    source: str, config: Any, dtype: torch.dtype, weights_id: str, **choices: Any
) -> str:
    """A stable string naming the exact encoder: same string <=> same tokens.

    ``weights_id`` identifies the weights without hashing gigabytes (see
    :func:`weights_identity`).
    """
    cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    for k in ("_name_or_path", "transformers_version", "_commit_hash", "torch_dtype", "dtype"):
        cfg.pop(k, None)
    blob = json.dumps(
        {"config": cfg, "weights": weights_id, "choices": choices},
        sort_keys=True,
        default=str,
    ).encode()
    digest = hashlib.sha256(blob).hexdigest()[:12]
    name = Path(source).name if Path(source).is_dir() else source
    parts = [f"{name}", digest, str(dtype).removeprefix("torch.")]
    parts += [f"{k}={v}" for k, v in sorted(choices.items()) if v is not None]
    return ":".join(parts)


#: bytes read per sample and samples per file by :func:`weights_identity`
_SAMPLE_BYTES = 4096
_SAMPLES = 16


def weights_identity(path: str, commit: str | None = None) -> str:
    """A content identity of a checkpoint's weights that is cheap on gigabyte files.

    Local directory: per ``*.safetensors`` file its name, size, the SHA-256 of its
    JSON header (tensor names, dtypes, shapes, offsets) and of 16 evenly spaced 4 KiB
    samples of the data. It reads ~64 KiB per file, and unlike modification times
    it survives copying the checkpoint to another machine, so every worker of a
    cluster computes the same fingerprint. Hub id: ``id@commit`` (pass the config's
    ``_commit_hash``), which names the weights exactly.
    """
    p = Path(path)
    if not p.is_dir():
        return f"{path}@{commit}" if commit else path
    parts = []
    for f in sorted(p.glob("*.safetensors")):
        h = hashlib.sha256()
        size = f.stat().st_size
        with f.open("rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            h.update(fh.read(min(n, size)))
            for i in range(_SAMPLES):
                fh.seek(max(0, (size - _SAMPLE_BYTES) * i // max(1, _SAMPLES - 1)))
                h.update(fh.read(_SAMPLE_BYTES))
        parts.append(f"{f.name}:{size}:{h.hexdigest()[:16]}")
    return ";".join(parts)

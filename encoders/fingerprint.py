"""Encoder fingerprints: a stable string naming the exact encoder (same string <=>
same tokens), part of every stored memory's key.

Built here (:func:`fingerprint`) and parsed here (:meth:`Fingerprint.parse`) only: the
string is ``name:digest:dtype[:choice=value…]`` and stored in every ``videos`` and
``memories`` row, so its format cannot change; readers that need a part of it (the
dtype to reload the encoder in, a family choice such as ``tokens=projected``) take it
from the typed record instead of splitting the string themselves.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from videomem.encoders.hf import LoadSettings
from videomem.pipeline.errors import EncoderError


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """The parts of an encoder fingerprint, ``name:digest:dtype[:choice=value…]``;
    ``str()`` gives the stored string back byte for byte."""

    #: the checkpoint as the user named it (a local directory by its folder's name)
    name: str
    #: 12 hex digits of the SHA-256 of its config, weights identity and choices
    digest: str
    #: the dtype the encoder ran in ("float32", "bfloat16" …)
    dtype: str
    #: family choices that change the tokens, as (name, value) sorted by name
    choices: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return ":".join(
            [self.name, self.digest, self.dtype, *(f"{k}={v}" for k, v in self.choices)]
        )

    def choice(self, name: str) -> str | None:
        """The value of a family choice (e.g. ``tokens``), or None when not set."""
        return dict(self.choices).get(name)

    @classmethod
    def parse(cls, text: str) -> Fingerprint:
        """The record of a stored fingerprint string. Raises :class:`EncoderError` when
        it does not have the three leading parts."""
        parts = text.split(":")
        if len(parts) < 3 or not all(parts[:3]):
            raise EncoderError(
                f"not an encoder fingerprint (name:digest:dtype[:choice=value…]): {text!r}"
            )
        choices: list[tuple[str, str]] = []
        for part in parts[3:]:
            if "=" in part:
                k, v = part.split("=", 1)
                choices.append((k, v))
            elif choices:  # a choice's value that held a ":" itself
                k, v = choices[-1]
                choices[-1] = (k, f"{v}:{part}")
            else:
                raise EncoderError(f"encoder fingerprint {text!r}: {part!r} is not a choice=value")
        return cls(parts[0], parts[1], parts[2], tuple(choices))


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
    chosen = tuple((k, f"{v}") for k, v in sorted(choices.items()) if v is not None)
    return str(Fingerprint(name, digest, str(dtype).removeprefix("torch."), chosen))


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

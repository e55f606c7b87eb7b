"""Stored token encodings: float16 (default, bit-exact) or int8 with a float32 scale.

Pure functions, NumPy/torch in, bytes out: the store decides where the bytes and scales
go (one row per slot, as it stores float16 tokens today).

* ``float16``: little-endian IEEE half, C order ``[N, D]`` per slot, exactly the
  store's current ``tokens`` column (``np.frombuffer(b, "<f2").reshape(n, d)``).
* ``int8``: symmetric quantisation ``q = clamp(round(x / s), -127, 127)``,
  ``s = max|x| / 127`` over a group, decoded as ``q * s``. Half the bytes of float16
  (plus 4 bytes per group). Groups (``scale``):

  - ``"token"``: one scale per token ``[L, N]``. Tokens of one frame can differ in
    magnitude by orders (CLS/register tokens, ReLU maps), and a shared scale would
    round the small ones to zero; costs 4 bytes per token (about 0.3% at D=1280).
  - ``"slot"``: one scale per slot ``[L]``, the cheapest.

  The error per element is at most ``s / 2`` (round to nearest); -128 is never used
  so the code is symmetric. An all-zero group gets ``s = 0`` and decodes to zeros.

The store picks the encoding from ``MemoryConfig.token_dtype``/``token_scale``;
:func:`videomem.memory.store.schema.stored_bytes` counts what its rows take.

Shapes: ``L`` slots, ``N`` tokens per slot, ``D`` token width.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from videomem.memory.config import TOKEN_DTYPES, TOKEN_SCALES, TokenDtype, TokenScale
from videomem.pipeline.errors import ConfigError, EncoderError

_QMAX = 127


@dataclass(frozen=True, slots=True)
class PackedTokens:
    """Encoded tokens of ``shape = (L, N, D)``.

    rows:   L byte strings, one per slot (``N*D*2`` bytes for float16, ``N*D`` for int8)
    scales: float32 ``[L]`` (per slot) or ``[L, N]`` (per token) for int8; None for float16
    """

    dtype: TokenDtype
    shape: tuple[int, int, int]
    rows: list[bytes]
    scales: np.ndarray | None
    scale: TokenScale | None

    @property
    def nbytes(self) -> int:
        """Bytes stored: token payload plus scales."""
        extra = 0 if self.scales is None else int(self.scales.nbytes)
        return sum(len(r) for r in self.rows) + extra


def pack_tokens(
    tokens: torch.Tensor, dtype: TokenDtype = "float16", scale: TokenScale = "token"
) -> PackedTokens:
    """Encode ``tokens [L, N, D]`` (any float dtype, any device) as :class:`PackedTokens`.

    ``scale`` applies to int8 only. int8 needs finite tokens (raises ``EncoderError``).
    """
    if dtype not in TOKEN_DTYPES:
        raise ConfigError(f"unknown token dtype {dtype!r}; choose from {TOKEN_DTYPES}")
    if scale not in TOKEN_SCALES:
        raise ConfigError(f"unknown scale mode {scale!r}; choose from {TOKEN_SCALES}")
    if tokens.dim() != 3:
        raise ConfigError(f"pack_tokens: expected tokens [L, N, D], got {tuple(tokens.shape)}")
    shape = (int(tokens.shape[0]), int(tokens.shape[1]), int(tokens.shape[2]))
    x = tokens.detach().to("cpu", torch.float32)
    if dtype == "float16":
        arr = np.ascontiguousarray(x.to(torch.float16).numpy()).astype("<f2", copy=False)
        return PackedTokens("float16", shape, [r.tobytes() for r in arr], None, None)
    if not bool(torch.isfinite(x).all()):
        raise EncoderError("int8 token storage needs finite tokens (found NaN or inf)")
    dims = (1, 2) if scale == "slot" else (2,)
    amax = x.abs().amax(dim=dims, keepdim=True)  # [L, 1, 1] or [L, N, 1]
    s = amax / _QMAX
    q = torch.round(x / torch.where(s > 0, s, torch.ones_like(s))).clamp_(-_QMAX, _QMAX)
    arr = np.ascontiguousarray(q.to(torch.int8).numpy())
    scales = s.reshape(shape[0]) if scale == "slot" else s.reshape(shape[0], shape[1])
    return PackedTokens(
        "int8", shape, [r.tobytes() for r in arr], scales.numpy().astype("<f4"), scale
    )


def unpack_tokens(packed: PackedTokens) -> torch.Tensor:
    """Decode to ``[L, N, D]``: float16 for ``float16`` (bit-exact), float32 for ``int8``."""
    n_slots, n, d = packed.shape
    if len(packed.rows) != n_slots:
        raise ConfigError(f"unpack_tokens: {len(packed.rows)} rows for {n_slots} slots")
    if packed.dtype == "float16":
        arr = np.frombuffer(b"".join(packed.rows), dtype="<f2").reshape(n_slots, n, d)
        return torch.from_numpy(arr.astype(np.float16))  # astype copies: writable, native
    if packed.scales is None:
        raise ConfigError("unpack_tokens: int8 tokens without scales")
    q = np.frombuffer(b"".join(packed.rows), dtype=np.int8).reshape(n_slots, n, d)
    s = packed.scales.astype(np.float32)
    s = s.reshape(n_slots, 1, 1) if packed.scale == "slot" else s.reshape(n_slots, n, 1)
    return torch.from_numpy(q.astype(np.float32) * s)


def reconstruction_error(tokens: torch.Tensor, decoded: torch.Tensor) -> dict[str, float]:
    """How far ``decoded`` is from ``tokens`` (both ``[L, N, D]``), in float32:
    ``max_abs``, ``rel_rmse`` (RMS error over RMS of ``tokens``) and ``min_cosine``
    (the worst token's cosine with its original; a zero token decoded as zero counts 1)."""
    if tokens.shape != decoded.shape:
        raise ConfigError(
            f"reconstruction_error: shapes differ {tuple(tokens.shape)} vs {tuple(decoded.shape)}"
        )
    a, b = tokens.detach().float().cpu(), decoded.detach().float().cpu()
    if a.numel() == 0:
        return {"max_abs": 0.0, "rel_rmse": 0.0, "min_cosine": 1.0}
    err = a - b
    rms = float(a.pow(2).mean().sqrt())
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1, eps=1e-8)
    both_zero = (a.abs().amax(dim=-1) == 0) & (b.abs().amax(dim=-1) == 0)
    cos = torch.where(both_zero, torch.ones_like(cos), cos)  # zero kept as zero: exact
    return {
        "max_abs": float(err.abs().max()),
        "rel_rmse": float(err.pow(2).mean().sqrt()) / rms if rms > 0 else 0.0,
        "min_cosine": float(cos.min()),
    }

"""An encoder's forward pass under ``torch.compile``, trusted only after a parity check.

Design decisions:

* **Opt-in, outside the fingerprint** (``EncoderConfig.compile``): a compiled forward
  computes the same function as the eager one, up to kernel rounding, so memories
  from either are interchangeable. The parity check is what makes that a fact rather
  than a hope.
* **Parity on the first batch**: the first call runs the eager forward and the
  compiled one on the same pixels and compares their tokens (largest absolute
  difference relative to the largest eager magnitude, within :data:`TOLERANCE` for the
  dtype). Within tolerance: the compiled forward is used from then on. Otherwise, or
  when compiling fails (no C++ compiler, an op dynamo cannot trace, a later
  recompilation for another batch size that fails): a warning, and the eager forward
  for good. The first batch returns the eager result either way.
* **Out of memory is not a compile failure**: it propagates, so the encoder's
  out-of-memory retry halves the chunk as it does for eager.
* ``compiler`` is injectable (default ``torch.compile``) so the fallback paths can be
  tested with a compiler that fails or miscompiles on purpose.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

import torch
from videomem.encoders.gpu import is_out_of_memory

__all__ = ["TOLERANCE", "CompiledForward", "parity_error"]

log = logging.getLogger(__name__)

Forward = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]

#: largest |compiled - eager| / max |eager| accepted, by the model's dtype: fp32 kernels
#: differ by reassociation only; half precision rounds each fused op differently
TOLERANCE: Final[dict[torch.dtype, float]] = {
    torch.float32: 1e-3,
    torch.bfloat16: 3e-2,
    torch.float16: 1e-2,
}


def parity_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| / max |want| (inf when the shapes differ or got is not finite)."""
    if got.shape != want.shape:
        return float("inf")
    g, w = got.detach().float(), want.detach().float()
    err = float((g - w).abs().max()) if g.numel() else 0.0
    if err != err:  # NaN
        return float("inf")
    scale = float(w.abs().max()) if w.numel() else 0.0
    return err / max(scale, 1e-12)


class CompiledForward:
    """``eager`` (pixels [b, 3, H, W] -> (tokens [b, N, D], embedding [b, E] or None))
    compiled, checked against eager on its first call; see the module docstring.

    ``state``: ``"pending"`` (no batch yet), ``"compiled"`` (parity held, compiled in
    use) or ``"eager"`` (fell back; ``reason`` says why).
    """

    def __init__(
        self,
        eager: Forward,
        dtype: torch.dtype,
        *,
        name: str = "encoder",
        tolerance: float | None = None,
        compiler: Callable[[Forward], Forward] | None = None,
    ) -> None:
        self.eager = eager
        self.name = name
        self.tolerance = TOLERANCE.get(dtype, 3e-2) if tolerance is None else tolerance
        self.state = "pending"
        self.reason: str | None = None
        #: the parity error measured on the first batch (None before it)
        self.error: float | None = None
        self._compiler = compiler if compiler is not None else _torch_compile
        self._compiled: Forward | None = None

    def __call__(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.state == "eager":
            return self.eager(pixels)
        if self.state == "compiled" and self._compiled is not None:
            try:
                return self._compiled(pixels)
            except Exception as err:
                if is_out_of_memory(err):
                    raise
                self._fall_back(f"the compiled forward failed: {type(err).__name__}: {err}")
                return self.eager(pixels)
        return self._first(pixels)

    def _first(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        want = self.eager(pixels)
        try:
            self._compiled = self._compiler(self.eager)
            got = self._compiled(pixels)
        except Exception as err:
            if is_out_of_memory(err):
                raise
            self._fall_back(f"torch.compile failed: {type(err).__name__}: {err}")
            return want
        self.error = parity_error(got[0], want[0])
        if self.error > self.tolerance:
            self._fall_back(
                f"compiled tokens differ from eager by {self.error:.2e} of their scale "
                f"(tolerance {self.tolerance:.0e})"
            )
        else:
            self.state = "compiled"
            log.info("%s: torch.compile parity held (%.2e)", self.name, self.error)
        return want

    def _fall_back(self, reason: str) -> None:
        self.state, self.reason, self._compiled = "eager", reason, None
        log.warning("%s: %s; running eager", self.name, reason)


def _torch_compile(fn: Forward) -> Forward:
    compiled: Any = torch.compile(fn)
    return compiled  # type: ignore[no-any-return]

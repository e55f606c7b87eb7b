"""The encoder config: which frozen model turns frames into tokens, and how it runs.

Its fields that change the tokens (model, dtype, family options) are also part of the
encoder fingerprint (``encoders.fingerprint``); speed knobs (device, batch size,
compile) are not hashed, so a memory made on a GPU is found again on a CPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from videomem.pipeline.types import ConfigBase


@dataclass(frozen=True, slots=True)
class EncoderConfig(ConfigBase):
    """Which frozen model turns frames into tokens, and how it runs."""

    _NOT_HASHED: ClassVar[tuple[str, ...]] = ("device", "batch_size", "compile")

    # Hugging Face hub id or local checkpoint directory ("tiny" = the random smoke-test
    # model). Required: a default model would silently give a forgetful caller
    # meaningless tokens.
    model: str
    # "cuda", "cpu", "cuda:1" …; None picks CUDA when present.
    device: str | None = None
    # "float32", "bfloat16", "float16"; None = fp32 on CPU, bf16 on GPU.
    dtype: str | None = None
    # Frames per forward pass: the main speed/memory knob on a GPU.
    batch_size: int = 32
    # Family-specific choices (e.g. {"layer": -2, "pool": 4} for CLIP); part of the
    # encoder fingerprint because they change the tokens.
    options: dict[str, Any] = field(default_factory=dict)
    # Never run code shipped inside a checkpoint unless the user asks for it.
    trust_remote_code: bool = False
    # Run the forward under torch.compile (faster on GPUs once compiled), kept only if
    # its tokens match eager on the first batch; not in the fingerprint, like device.
    compile: bool = False

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any], model: str) -> EncoderConfig:
        """The config a stored memory's encoder ran with: the encoder part of its
        ``config_json`` (``IndexConfig.encoder``), ``model`` where that names none."""
        return cls.from_dict({"model": model, **stored})  # type: ignore[no-any-return]

"""A QA model loaded for a stored memory: the VLM, and the encoder side that made it.

The checkpoint that answers must be the one whose encoder made the memory. We check it
the one way that cannot drift from the index stage: load the encoder exactly as the
index stage did and compare its fingerprint with the stored one
(:func:`videomem.encoders.record.load_record_encoder`, shared with tags and search). The encoder is needed anyway
for breakpoint questions, whose last frames are decoded and encoded again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from videomem.encoders.config import EncoderConfig
from videomem.encoders.fingerprint import Fingerprint
from videomem.memory.config import MemoryConfig
from videomem.pipeline.errors import VideomemError
from videomem.pipeline.types import DecodeConfig
from videomem.qa.model import NO_LM, QAModel, load_qa_model, no_lm_error
from videomem.qa.types import QAError


@dataclass(frozen=True)
class VideoContext:
    """What breakpoint mode needs to decode a video's frames again, from its record."""

    uri: str
    video_id: str
    decode: DecodeConfig
    memory: MemoryConfig
    duration_s: float | None

    @classmethod
    def from_record(cls, record: Any) -> VideoContext:
        cfg = record.config
        return cls(record.uri, record.video_id, cfg.decode, cfg.memory, record.duration_s)


@dataclass
class QASession:
    """A QA model plus the frame encoder that made the memories it answers about."""

    qa: QAModel
    encoder: Any  # a FrameEncoder, same fingerprint as the memories
    model: str  # what the user passed (or the stored model), as named in answer rows

    @property
    def fingerprint(self) -> str:
        return str(self.encoder.fingerprint)


def load_for_record(
    record: Any,
    model: str | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> QASession:
    """Load the QA model for a stored ``videos`` record.

    ``model`` defaults to the record's own ``model``; another checkpoint is refused
    unless its encoder fingerprint equals the stored one. ``dtype`` is the LM's; the
    encoder side runs in the dtype the memory was made with.
    """
    from videomem.encoders.hf import load_config
    from videomem.encoders.record import EncoderMismatchError, load_record_encoder
    from videomem.encoders.registry import resolve_model

    if record.status != "indexed":
        raise QAError(f"video {record.video_id} has no memory (status {record.status})")
    name = model or record.model
    if not name:
        raise QAError(f"video {record.video_id}: the store does not name the model; pass one")
    path = resolve_model(name)
    enc_cfg = EncoderConfig.from_stored(record.config.encoder, record.model)
    trust = enc_cfg.trust_remote_code
    config = load_config(path, trust_remote_code=trust)
    if config.model_type in NO_LM:
        raise no_lm_error(f"the memory of video {record.video_id} ({name})", config.model_type)
    try:
        Fingerprint.parse(record.encoder_fingerprint)  # a clear error before any load
    except VideomemError as e:
        raise QAError(f"video {record.video_id}: {e}") from e
    qa = load_qa_model(path, device, dtype, trust_remote_code=trust)
    try:
        encoder = load_record_encoder(record, qa.device, name)
    except EncoderMismatchError as e:
        raise QAError(f"{e}. Answer with the stored model, or re-index with this one.") from e
    except VideomemError as e:
        raise QAError(f"{name}: cannot load its encoder side to check it ({e})") from e
    return QASession(qa=qa, encoder=encoder, model=name)

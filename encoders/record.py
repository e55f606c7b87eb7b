"""The encoder that made a stored memory, loaded again and checked (QA, tags, search).

Design decisions:

* One way to reload it, so the three readers of stored memories that need the encoder
  (the QA session's encoder side for breakpoint frames, the tag job's classifier head
  or zero-shot tower, visual search's text tower) cannot drift apart: the record's
  checkpoint (or another the caller names), its family options and trust setting from
  the stored config, the dtype its fingerprint names, on the caller's device.
* The check is the fingerprint the index stage stored: a checkpoint that changed or
  moved since, or another checkpoint passed in its place, is refused with
  :class:`EncoderMismatchError`, never used to read memories it did not make.
"""

from __future__ import annotations

from typing import Any

import torch
from videomem.encoders.config import EncoderConfig
from videomem.encoders.contract import FrameEncoder
from videomem.encoders.fingerprint import Fingerprint
from videomem.pipeline.errors import EncoderError


class EncoderMismatchError(EncoderError):
    """The encoder loaded now is not the one whose fingerprint the memory stores."""


def load_record_encoder(
    record: Any,
    device: str | torch.device | None = None,
    model: str | None = None,
) -> FrameEncoder:
    """The encoder that made ``record``'s memory (a ``videos`` row: ``model``,
    ``config``, ``encoder_fingerprint``), loaded from ``model`` (default: the record's
    own) and checked against the stored fingerprint.

    Raises :class:`EncoderError` when it cannot be loaded and
    :class:`EncoderMismatchError` when what loads is another encoder.
    """
    from videomem.encoders.registry import load_encoder, resolve_model

    name = model or record.model
    if not name:
        raise EncoderError(f"video {record.video_id}: the store does not name its model")
    enc_cfg = EncoderConfig.from_stored(record.config.encoder, record.model)
    encoder = load_encoder(
        resolve_model(name),
        device,
        Fingerprint.parse(record.encoder_fingerprint).dtype,
        trust_remote_code=enc_cfg.trust_remote_code,
        **enc_cfg.options,
    )
    if encoder.fingerprint != record.encoder_fingerprint:
        raise EncoderMismatchError(
            f"{name} is not the encoder that made the memory of video {record.video_id}: "
            f"its fingerprint is {encoder.fingerprint}, the memory's is "
            f"{record.encoder_fingerprint} (stored model: {record.model or '?'}; "
            "checkpoint changed or moved?)"
        )
    return encoder

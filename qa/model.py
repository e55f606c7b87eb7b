"""The QA model: a whole VLM checkpoint that takes stored visual tokens in place of
pixels.

Design decisions (checked facts in DESIGN.md, "QA stage"):

* The whole ``*ForConditionalGeneration`` is loaded once per process, through the same
  safetensors-only, offline-first loader as the encoders (``encoders.hf``).
* Stored tokens go exactly where the model's own features would: the prompt holds one
  placeholder per visual token and the features are passed as
  ``mm_encoder_outputs={"image"|"video": BaseModelOutputWithPooling(pooler_output=...)}``,
  which every family scatters into the placeholder positions in order. BLIP-2's
  ``generate`` insists on pixels, so for it we splice the projected tokens into
  ``inputs_embeds`` ourselves and call its ``language_model`` (what its own
  ``generate`` does after the vision part). Features of a whole batch are passed as one
  ``[1, total, D]`` block: the scatter fills placeholders in row-major order, so rows of
  different lengths need no padding of features.
* Stored float16 tokens are cast to the model's dtype; the dtype that answered is
  reported with every answer.
* Prefix reuse: the prefix (system prompt + video) is prefilled once into a
  ``DynamicCache``; each question continues from it and the cache is cropped back to the
  prefix afterwards (deep-copied instead for caches that cannot be cropped exactly).
  Features are never passed with a warm cache, and the attention mask always covers
  the prefix.
* Batching: left padding plus an attention mask; ``generate`` derives positions from it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from videomem.encoders.fingerprint import Fingerprint
from videomem.encoders.hf import (
    LoadSettings,
    load_config,
    load_pretrained,
    resolve_checkpoint,
    resolve_device,
    resolve_dtype,
)
from videomem.qa.layout import grid_side, layout_for
from videomem.qa.prompt import Prompt, PromptBuilder, load_chat_template
from videomem.qa.types import GenerationSettings, QAError

#: model_type -> the transformers class of the whole VLM
VLM_CLASSES: dict[str, str] = {
    "llava": "LlavaForConditionalGeneration",
    "llava_onevision": "LlavaOnevisionForConditionalGeneration",
    "llava_next_video": "LlavaNextVideoForConditionalGeneration",
    "smolvlm": "SmolVLMForConditionalGeneration",
    "idefics3": "Idefics3ForConditionalGeneration",
    "blip-2": "Blip2ForConditionalGeneration",
}

#: encoder families without a language model
NO_LM = ("clip", "siglip", "mobilenet_v2")


def no_lm_error(model: str, model_type: str) -> QAError:
    return QAError(
        f"{model}: a {model_type} encoder has no language model, so its memories cannot "
        "be answered from directly. Index with a VLM (llava, llava_onevision, "
        "llava_next_video, smolvlm/idefics3, blip-2, a converted moviechat), or use the text-timeline mode "
        "(frame tags/captions answered by a text-only LLM)."
    )


def _pooled(features: torch.Tensor) -> Any:
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    return BaseModelOutputWithPooling(pooler_output=features)


def stored_token_kind(encoder_fingerprint: str) -> str:
    """BLIP-2 memories hold Q-Former outputs unless indexed with ``tokens=projected``."""
    if not encoder_fingerprint:  # none given: the encoder's default output, Q-Former tokens
        return "qformer"
    projected = Fingerprint.parse(encoder_fingerprint).choice("tokens") == "projected"
    return "projected" if projected else "qformer"


def generation_kwargs(settings: GenerationSettings, pad_id: int | None) -> dict[str, Any]:
    """``generate()``'s keyword arguments for ``settings``: sampling parameters only
    when sampling, and cleared otherwise (a checkpoint's sampling defaults must not
    leak into greedy decoding)."""
    kw: dict[str, Any] = {
        "max_new_tokens": settings.max_new_tokens,
        "do_sample": settings.do_sample,
        "pad_token_id": pad_id,
    }
    if settings.do_sample:
        kw.update(temperature=settings.temperature, top_p=settings.top_p)
    else:
        kw.update(temperature=None, top_p=None, top_k=None)
    return kw


def _rows_with_newlines(x: torch.Tensor, keep: torch.Tensor, newline: torch.Tensor) -> torch.Tensor:
    """OneVision with token dropping: per slot, per row of its square grid, the kept
    tokens of the row then one newline row when it has any (``x [L, N, D]``)."""
    side = grid_side(int(x.shape[1]))
    grid = x.reshape(x.shape[0], side, side, x.shape[-1])
    mask = keep.reshape(keep.shape[0], side, side)
    out = [
        piece
        for slot in range(grid.shape[0])
        for row in range(side)
        if bool(mask[slot, row].any())
        for piece in (grid[slot, row][mask[slot, row]], newline)
    ]
    return torch.cat(out) if out else x.new_zeros((0, x.shape[-1]))


class QAModel:
    """A loaded VLM plus its prompt builder. Thread-compatible, not thread-safe."""

    def __init__(self, model: Any, tokenizer: Any, config: Any, path: str, source: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.path = path
        self.source = source
        self.model_type: str = config.model_type
        self.layout = layout_for(self.model_type, config)
        #: most slots one view may show (MovieChat: its position table's size); None: any
        self.max_slots: int | None = (
            int(config.n_position) ** 2 if self.model_type == "moviechat" else None
        )
        self.prompts = PromptBuilder(tokenizer, load_chat_template(path, tokenizer), self.layout)
        self.device = next(model.parameters()).device
        self.dtype: torch.dtype = model.dtype
        text = config.get_text_config()
        self.context_len = int(getattr(text, "max_position_embeddings", 0) or 0) or None
        pad = tokenizer.pad_token_id
        gen = getattr(model, "generation_config", None)
        eos = getattr(gen, "eos_token_id", None) if gen is not None else None
        if eos is None:
            eos = tokenizer.eos_token_id
        self.eos_ids: set[int] = set(
            eos if isinstance(eos, list) else [eos] if eos is not None else []
        )
        self.pad_id = int(pad if pad is not None else min(self.eos_ids, default=0))

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    @property
    def _lm(self) -> Any:
        """What ``generate`` runs on: BLIP-2's language model, else the whole VLM."""
        return self.model.language_model if self.layout.modality is None else self.model

    # ------------------------------------------------------------------ features

    def visual_features(
        self, tokens: torch.Tensor, encoder_fingerprint: str = "", keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Stored tokens [L, N, D] -> the feature rows the LM receives for them,
        [L*N (+ suffix rows), D_lm], model dtype and device. ``keep`` [L, N] (token
        dropping): only the kept rows, in grid order, as the layout counts them
        (:meth:`Layout.slot_counts`; OneVision: a newline after each grid row with kept
        tokens); MovieChat reads every position whatever ``keep`` says."""
        if tokens.ndim != 3:
            raise QAError(f"tokens must be [L, N, D], got {tuple(tokens.shape)}")
        if keep is not None and tuple(keep.shape) != tuple(tokens.shape[:2]):
            raise QAError(f"keep {tuple(keep.shape)} does not match tokens {tuple(tokens.shape)}")
        if self.model_type == "moviechat":  # all slots -> the video Q-Former's queries
            with torch.inference_mode():
                return self.model.video_embeds(tokens).to(self.dtype)  # type: ignore[no-any-return]
        x = tokens.to(self.device, self.dtype)
        if self.model_type == "blip-2" and stored_token_kind(encoder_fingerprint) == "qformer":
            with torch.inference_mode():
                x = self.model.language_projection(x)
        newline = None
        if self.layout.suffix_rows:
            newline = self.model.model.image_newline.to(self.device, self.dtype)[None]
        if keep is None:
            rows = x.reshape(-1, x.shape[-1])
        elif newline is None:
            rows = x[keep.to(self.device)]  # row-major: slot by slot, grid order
        else:
            rows = _rows_with_newlines(x, keep.to(self.device), newline)
        if newline is not None:
            rows = torch.cat([rows, newline.expand(self.layout.suffix_rows, -1)])
        return rows

    def _mm(self, features: torch.Tensor) -> dict[str, Any]:
        """Keyword arguments that hand ``features`` [T, D] to the VLM's forward."""
        kind = self.layout.modality
        if kind is None:
            return {}
        block: Any = features[None]
        if self.model_type == "llava":
            block = (features,)  # llava concatenates a tuple of per-image rows
        elif self.model_type == "llava_next_video":
            block = [features[None]]  # a list of per-video [F, N, D] blocks
        return {"mm_encoder_outputs": {kind: _pooled(block)}}

    def _embeds(self, ids: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """BLIP-2: input embeddings with ``features`` scattered into the query positions."""
        place = ids == self.prompts.feature_id
        # the placeholder may lie outside the LM's vocabulary (MovieChat adds it to the
        # tokenizer only); its rows are overwritten, so embed any id there
        embeds = self.model.get_input_embeddings()(ids.masked_fill(place, 0))
        mask = place[..., None].expand_as(embeds)
        return embeds.masked_scatter(mask, features.to(embeds.dtype))

    def _inputs(
        self, ids: torch.Tensor, mask: torch.Tensor, features: torch.Tensor | None
    ) -> dict[str, Any]:
        if features is None:
            return {"input_ids": ids, "attention_mask": mask}
        n = int((ids == self.prompts.feature_id).sum())
        if n != features.shape[0]:
            raise QAError(f"the prompt has {n} visual placeholders for {features.shape[0]} tokens")
        if self.layout.modality is None:
            return {
                "input_ids": ids,
                "inputs_embeds": self._embeds(ids, features),
                "attention_mask": mask,
            }
        return {"input_ids": ids, "attention_mask": mask, **self._mm(features)}

    # ------------------------------------------------------------------ generation

    def _gen_kwargs(self, settings: GenerationSettings) -> dict[str, Any]:
        return generation_kwargs(settings, self.pad_id)

    def _trim(self, new: torch.Tensor) -> list[list[int]]:
        """Generated ids per row, up to (not including) the first end-of-sequence."""
        out = []
        for row in new.tolist():
            cut = next((i for i, t in enumerate(row) if t in self.eos_ids), len(row))
            out.append(row[:cut])
        return out

    def generate(
        self,
        prompts: Sequence[Prompt],
        features: Sequence[torch.Tensor],
        settings: GenerationSettings,
    ) -> list[list[int]]:
        """Answer several full prompts in one left-padded batch; ``features[i]`` are
        prompt i's visual rows. Returns the generated ids of each row."""
        if len(prompts) != len(features):
            raise QAError("one feature block per prompt")
        width = max(len(p.ids) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - len(p.ids) :] = torch.tensor(p.ids)
            mask[i, width - len(p.ids) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        if settings.seed is not None:
            torch.manual_seed(settings.seed)
        with torch.inference_mode():
            out = self._lm.generate(
                **self._inputs(ids, mask, torch.cat(list(features))), **self._gen_kwargs(settings)
            )
        return self._trim(out[:, width:])

    def prefill(self, prompt: Prompt, features: torch.Tensor) -> Any:
        """Run the prompt's prefix (system + video) once; returns its KV cache."""
        from transformers import DynamicCache

        ids = torch.tensor([prompt.ids[: prompt.prefix_len]], device=self.device)
        mask = torch.ones_like(ids)
        cache = DynamicCache(config=self.config.get_text_config())
        inputs = self._inputs(ids, mask, features)
        with torch.inference_mode():
            if self.layout.modality is None:
                inputs.pop("input_ids")
                self._lm(**inputs, cache=cache, use_cache=True, logits_to_keep=1)
            else:
                self.model(**inputs, cache=cache, use_cache=True, logits_to_keep=1)
        return cache

    def generate_cached(
        self, cache: Any, prompt: Prompt, settings: GenerationSettings
    ) -> list[int]:
        """Answer one prompt whose prefix is in ``cache``; the cache holds exactly the
        prefix again afterwards. ``generate`` grows the cache it is given: a cache of
        plain full-attention layers is cropped back after each question (no copy);
        any other kind (sliding-window layers drop old states) is deep-copied first."""
        q = torch.tensor([prompt.ids[prompt.prefix_len :]], device=self.device)
        mask = torch.ones((1, len(prompt.ids)), dtype=torch.long, device=self.device)
        crop = all(type(layer).__name__ == "DynamicLayer" for layer in cache.layers)
        work = cache if crop else copy.deepcopy(cache)
        if settings.seed is not None:
            torch.manual_seed(settings.seed)
        try:
            with torch.inference_mode():
                out = self._lm.generate(
                    input_ids=q, attention_mask=mask, cache=work, **self._gen_kwargs(settings)
                )
        finally:
            if crop:
                grown = cache.get_seq_length() - prompt.prefix_len
                if grown > 0:
                    cache.crop(-grown)
        return self._trim(out[:, q.shape[1] :])[0]

    def logits(self, prompt: Prompt, features: torch.Tensor) -> torch.Tensor:
        """Full-sequence logits [T, V] (float32, CPU) of one prompt: for parity checks."""
        ids = torch.tensor([prompt.ids], device=self.device)
        inputs = self._inputs(ids, torch.ones_like(ids), features)
        with torch.inference_mode():
            if self.layout.modality is None:
                inputs.pop("input_ids")
                out = self._lm(**inputs)
            else:
                out = self.model(**inputs)
        return out.logits[0].float().cpu()

    def decode(self, ids: Sequence[int]) -> str:
        text = str(self.tokenizer.decode(list(ids), skip_special_tokens=True))
        if self.model_type == "moviechat":  # as MovieChat's Chat.answer cleans its output
            text = text.split(self.config.stop_text)[0].split("Assistant:")[-1]
        return text.strip()


def load_qa_model(
    model: str,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    *,
    trust_remote_code: bool = False,
) -> QAModel:
    """Load a whole VLM checkpoint (hub id or directory) for question answering."""
    from transformers import AutoTokenizer

    config = load_config(model, trust_remote_code=trust_remote_code)
    model_type = str(getattr(config, "model_type", None))
    if model_type in NO_LM:
        raise no_lm_error(str(model), model_type)
    if model_type not in VLM_CLASSES and model_type != "moviechat":
        raise QAError(
            f"{model}: model_type {model_type!r} is not a supported VLM family; "
            f"supported: {sorted(VLM_CLASSES)}"
        )
    path, local = resolve_checkpoint(model)
    dev = resolve_device(device)
    if model_type == "moviechat":
        return _load_moviechat(path, config, local, dev, dtype, str(model))
    settings = LoadSettings(
        device=dev,
        dtype=resolve_dtype(dtype, dev),
        batch_size=1,
        trust_remote_code=trust_remote_code,
        source=str(model),
    )
    vlm = load_pretrained(VLM_CLASSES[model_type], path, settings)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            path, local_files_only=local, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as e:
        raise QAError(f"{model}: cannot load its tokenizer ({e})") from e
    return QAModel(vlm, tokenizer, config, path, str(model))


def _load_moviechat(
    path: str, config: Any, local: bool, dev: torch.device, dtype: Any, source: str
) -> QAModel:
    """A converted MovieChat checkpoint: its video side and LLM (the frame side is the
    encoder's). Generation also stops at MovieChat's stop text ("###"), when the
    tokenizer has it as one token (Vicuna: "▁###")."""
    from transformers import AutoTokenizer
    from videomem.encoders.moviechat import read_parts

    settings = LoadSettings(dev, resolve_dtype(dtype, dev), 1, False, source)
    model = read_parts(path, config, ("video", "llm"), settings)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local)
    except (OSError, ValueError) as e:
        raise QAError(f"{source}: cannot load its tokenizer ({e})") from e
    gen = model.generation_config
    eos = gen.eos_token_id if gen.eos_token_id is not None else tokenizer.eos_token_id
    stops = set(eos if isinstance(eos, list) else [eos])
    for token in ("\u2581" + config.stop_text, config.stop_text):
        tid = tokenizer.convert_tokens_to_ids(token)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id:
            stops.add(tid)
    gen.eos_token_id = sorted(stops)
    return QAModel(model, tokenizer, config, path, source)

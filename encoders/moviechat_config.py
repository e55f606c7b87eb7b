"""The config of a converted MovieChat checkpoint (``model_type = "moviechat"``) and
MovieChat's prompt strings; importing this module registers the model type with
``AutoConfig`` (no remote code), which :func:`videomem.encoders.hf.load_config` does
before reading any config.

The config is transformers' :class:`~transformers.Blip2Config` (the frame side: ViT,
query tokens, Q-Former) plus MovieChat's video side and a LLaMA ``text_config``; each
field below says why it is there. See :mod:`videomem.encoders.moviechat` for the model.
"""

# no ``from __future__ import annotations``: the strict dataclass reads the field types
from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, Blip2Config, Blip2QFormerConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

#: MovieChat's system text and turn markers (eval_code/.../run_inference_qa_moviechat.py)
MOVIECHAT_SYSTEM = (
    "You are able to understand the visual content that the user provides."
    "Follow the instructions carefully and explain your answers."
)
#: the prompt around the video and the question; MovieChat tokenises the text before
#: ``<ImageHere>`` with BOS and the text after it without, as two separate segments
MOVIECHAT_PROMPT = MOVIECHAT_SYSTEM + "###Human: <Video><ImageHere></Video> {question}###Assistant:"
#: the placeholder MovieChat adds to the tokenizer for the 32 video tokens
IMAGE_PLACEHOLDER = "<ImageHere>"
#: MovieChat's answers end at "###" (its stopping criterion)
STOP_TEXT = "###"


@strict
class MovieChatConfig(Blip2Config):
    """BLIP-2's frame side + MovieChat's video side + a LLaMA ``text_config``."""

    model_type = "moviechat"
    sub_configs_defaults = {
        **Blip2Config.sub_configs_defaults,
        "video_qformer_config": Blip2QFormerConfig,  # type: ignore[dict-item]
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
    }

    #: the video Q-Former (2 BERT layers, cross-attention every layer, over frame tokens)
    video_qformer_config: dict | PreTrainedConfig | None = None
    #: video query tokens: what the LLM receives per question (32 in MovieChat)
    num_video_query_tokens: int = 32
    #: entries of video_frame_position_embedding (32 in MovieChat)
    max_frame_pos: int = 32
    #: side of the hierarchical table: n_position**2 positions (16 -> 256)
    n_position: int = 16
    #: the table's mixing weight (MovieChat's alpha)
    alpha: float = 0.01
    #: LAVIS's ln_vision is nn.LayerNorm's default eps, not the vision config's
    ln_vision_eps: float = 1e-5
    #: which embedding the table is built from; see the module docstring
    position_table: str = "trained"
    #: the memory preset indexing uses by default for this family
    memory_preset: str = "moviechat_reference"
    #: MovieChat's prompt, "{question}" and one <ImageHere> to fill
    prompt: str = MOVIECHAT_PROMPT
    #: MovieChat's answer stop text
    stop_text: str = STOP_TEXT

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        # after super(): the sub-configs are config objects by now
        video, frames = self.video_qformer_config, self.qformer_config
        video.encoder_hidden_size = frames.hidden_size  # type: ignore[union-attr]


AutoConfig.register("moviechat", MovieChatConfig)

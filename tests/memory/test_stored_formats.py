"""The strings a store keeps — the encoder fingerprint and ``config_json`` — are built
and parsed in one place each, and stay byte-identical to what earlier code wrote, so
old stores keep working.

The literals below were written by the code before the typed records existed (the
fingerprint joined and split on ":" by hand, ``config_json`` dumped inline by the
index step); they must not be edited to make a test pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from videomem.encoders.config import EncoderConfig
from videomem.encoders.fingerprint import Fingerprint, fingerprint
from videomem.memory.config import MEMORY_PRESETS, MemoryConfig
from videomem.memory.index_config import IndexConfig, index_config_hash
from videomem.memory.store import VideoRecord
from videomem.pipeline.errors import ConfigError, EncoderError
from videomem.pipeline.types import DecodeConfig

#: (source, dtype, weights id, choices) -> the fingerprint the earlier code built
HF_CONFIG = {"model_type": "clip", "hidden_size": 32, "_name_or_path": "/x"}
OLD_FINGERPRINTS = [
    (
        ("openai/clip-vit-base-patch32", torch.float32, "openai/clip-vit-base-patch32@abc123"),
        {"layer": -2, "pool": 4, "tokens": None},
        "openai/clip-vit-base-patch32:c0e5e2801fc7:float32:layer=-2:pool=4",
    ),
    (
        ("Salesforce/blip2-opt-2.7b", torch.bfloat16, "w"),
        {"tokens": "projected"},
        "Salesforce/blip2-opt-2.7b:0f1ae7b34648:bfloat16:tokens=projected",
    ),
    (("tiny", torch.float16, "w"), {}, "tiny:0c92f09dd71f:float16"),
]

#: config_json of a video indexed with these configs, as the index step wrote it
DECODE = DecodeConfig(fps=2.0, size=(224, 224), batch_size=32, cpus=2)
MEMORY = MEMORY_PRESETS["moviechat"]
ENCODER = EncoderConfig(model="/models/clip", dtype="float32", options={"layer": -2, "pool": 4})
OLD_CONFIG_JSON = (
    '{"decode": {"aspect": "pad", "batch_size": 32, "cpus": 2, "decoder": "ffmpeg", '
    '"device": "cpu", "end_s": null, "fps": 2.0, "num_frames": null, "sample": "exact", '
    '"segments": null, "size": [224, 224], "start_s": null, "timeout_s": 60.0}, '
    '"encoder": {"batch_size": 32, "compile": false, "device": null, "dtype": "float32", '
    '"model": "/models/clip", "options": {"layer": -2, "pool": 4}, '
    '"trust_remote_code": false}, "memory": {"keep_recent": 18, "long_term_len": 256, '
    '"merge_to": 2, "method": "moviechat", "metric": "cosine", "overflow": "consolidate", '
    '"short_term_len": 18, "threshold": 0.85, "token_dtype": "float16", '
    '"token_scale": "token", "weighting": "size", "window": null}}'
)


# --------------------------------------------------------------------------- fingerprint


@pytest.mark.parametrize(("args", "choices", "old"), OLD_FINGERPRINTS)
def test_fingerprint_is_built_as_before_and_round_trips(
    args: tuple[str, torch.dtype, str], choices: dict[str, object], old: str
) -> None:
    source, dtype, weights = args
    assert not Path(source).is_dir()  # a directory would be named by its folder
    built = fingerprint(source, HF_CONFIG, dtype, weights, **choices)
    assert built == old
    parsed = Fingerprint.parse(old)
    assert str(parsed) == old
    assert parsed.name == source and parsed.dtype == str(dtype).removeprefix("torch.")
    assert len(parsed.digest) == 12 and int(parsed.digest, 16) >= 0
    assert dict(parsed.choices) == {k: str(v) for k, v in choices.items() if v is not None}


def test_fingerprint_choices_are_read_by_name() -> None:
    fp = Fingerprint.parse("Salesforce/blip2-opt-2.7b:0f1ae7b34648:bfloat16:tokens=projected")
    assert fp.choice("tokens") == "projected" and fp.choice("layer") is None
    assert Fingerprint.parse("tiny:0c92f09dd71f:float16").choices == ()


def test_a_choice_value_holding_a_colon_round_trips() -> None:
    built = fingerprint("m", HF_CONFIG, torch.float32, "w", prompt="a:b", layer=1)
    parsed = Fingerprint.parse(built)
    assert parsed.choice("prompt") == "a:b" and parsed.choice("layer") == "1"
    assert str(parsed) == built


@pytest.mark.parametrize("bad", ["", "enc", "enc:abc", "enc::float32", "e:abc:f32:notachoice"])
def test_a_malformed_fingerprint_is_a_clear_error(bad: str) -> None:
    with pytest.raises(EncoderError, match="fingerprint"):
        Fingerprint.parse(bad)


# --------------------------------------------------------------------------- config_json


def test_config_json_is_written_as_before() -> None:
    written = IndexConfig(DECODE, MEMORY, ENCODER.to_dict()).to_json()
    assert written == OLD_CONFIG_JSON
    # and as the index step dumped it inline, for any configs (the naive reference)
    other = IndexConfig(DecodeConfig(), MemoryConfig(token_dtype="int8"), {"model": "tiny"})
    reference = json.dumps(
        {
            "decode": other.decode.to_dict(),
            "memory": other.memory.to_dict(),
            "encoder": {"model": "tiny"},
        },
        sort_keys=True,
        default=str,
    )
    assert other.to_json() == reference


def test_config_json_parses_into_the_configs_it_was_written_from() -> None:
    cfg = IndexConfig.parse(OLD_CONFIG_JSON)
    assert cfg.decode == DECODE and cfg.memory == MEMORY
    assert EncoderConfig.from_stored(cfg.encoder, "ignored") == ENCODER
    assert cfg.to_json() == OLD_CONFIG_JSON  # round trip, byte for byte
    assert cfg.config_hash == index_config_hash(DECODE, MEMORY)


def test_a_videos_row_reads_its_config_through_the_record() -> None:
    row = VideoRecord("v", "enc:abc:float32", "h", "indexed", "/v.mp4", config_json=OLD_CONFIG_JSON)
    assert row.config == IndexConfig.parse(OLD_CONFIG_JSON)
    assert row.config.decode.size == (224, 224)


@pytest.mark.parametrize("text", ["{}", "", '{"encoder": {"model": "m"}}'])
def test_missing_parts_read_as_defaults(text: str) -> None:
    cfg = IndexConfig.parse(text)
    assert cfg.decode == DecodeConfig()
    assert cfg.memory == MemoryConfig()
    assert EncoderConfig.from_stored(cfg.encoder, "m") == EncoderConfig(model="m")


def test_an_adaptive_memory_stored_before_max_span_s_reads_as_unlimited() -> None:
    """A field added later reads as what the memory was built with: adaptive memories
    stored before max_span_s had no span limit (and keep the key they were stored under)."""
    old = IndexConfig.parse('{"memory": {"method": "adaptive", "metric": "cosine"}}').memory
    assert old == MemoryConfig(metric="cosine", max_span_s=None)
    assert old.hashed_dict() != MemoryConfig().hashed_dict()


def test_max_span_s_stays_out_of_the_json_of_methods_that_do_not_read_it() -> None:
    for preset in ("moviechat", "moviechat_reference", "mbc"):
        cfg = MemoryConfig.preset(preset)
        assert "max_span_s" not in cfg.to_dict()
        assert MemoryConfig.from_dict(json.loads(cfg.to_json())) == cfg
    assert MemoryConfig().to_dict()["max_span_s"] == 20.0


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"decode": {"fps": 1.0, "frobnicate": 3}}', "unknown fields"),
    ],
)
def test_an_unreadable_config_json_is_a_clear_error(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        IndexConfig.parse(text)

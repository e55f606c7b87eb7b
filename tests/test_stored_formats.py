"""The strings a store keeps — the encoder fingerprint and ``config_json`` — are built
and parsed in one place each, and stay byte-identical to what earlier code wrote, so
old stores keep working.

The literals below were written by the code before the typed records existed (the
fingerprint joined and split on ":" by hand, ``config_json`` dumped inline by the
index step); they must not be edited to make a test pass.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from videomem.encoders.fingerprint import Fingerprint, fingerprint
from videomem.pipeline.errors import EncoderError

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

"""memory.store.codec: float16 and int8 token encodings against naive per-element loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from videomem.memory.store.codec import pack_tokens, reconstruction_error, unpack_tokens
from videomem.pipeline.errors import ConfigError, EncoderError


def tokens(l: int = 3, n: int = 5, d: int = 7, seed: int = 0) -> torch.Tensor:  # noqa: E741
    g = torch.Generator().manual_seed(seed)
    # tokens of very different magnitude within a slot, as CLS/ReLU maps have
    return torch.randn(l, n, d, generator=g) * torch.logspace(-2, 1, n)[None, :, None]


def naive_int8(x: torch.Tensor, scale: str) -> tuple[list[list[int]], list[float]]:
    """Per group, written out: s = max|x| / 127, q = round-half-even(x / s) in [-127, 127]."""
    groups = (
        [[(l, n) for n in range(x.shape[1])] for l in range(x.shape[0])]  # noqa: E741
        if scale == "slot"
        else [[(l, n)] for l in range(x.shape[0]) for n in range(x.shape[1])]  # noqa: E741
    )
    qs, ss = [], []
    for g in groups:
        vals = [float(v) for l, n in g for v in x[l, n].tolist()]  # noqa: E741
        s = float(np.float32(np.float32(max(abs(v) for v in vals)) / np.float32(127)))
        q = [
            int(max(-127, min(127, round(float(np.float32(v) / np.float32(s)))))) if s else 0
            for v in vals
        ]
        qs.append(q)
        ss.append(s)
    return qs, ss


def test_float16_is_the_store_layout_and_bit_exact() -> None:
    x = tokens()
    p = pack_tokens(x)
    assert p.dtype == "float16" and p.scales is None and len(p.rows) == 3
    assert p.nbytes == 3 * 5 * 7 * 2
    row = np.frombuffer(p.rows[1], "<f2").reshape(5, 7)
    assert np.array_equal(row, x[1].half().numpy())
    back = unpack_tokens(p)
    assert back.dtype == torch.float16 and torch.equal(back, x.half())


@pytest.mark.parametrize("scale", ["slot", "token"])
def test_int8_matches_naive_quantisation(scale: str) -> None:
    x = tokens(seed=1)
    p = pack_tokens(x, "int8", scale)  # type: ignore[arg-type]
    qs, ss = naive_int8(x, scale)
    got_q = np.frombuffer(b"".join(p.rows), np.int8)
    assert got_q.tolist() == [v for q in qs for v in q]
    assert p.scales is not None
    np.testing.assert_array_equal(p.scales.reshape(-1), np.array(ss, dtype=np.float32))
    assert p.nbytes == 3 * 5 * 7 + 4 * (3 if scale == "slot" else 15)
    back = unpack_tokens(p)
    assert back.dtype == torch.float32 and back.shape == x.shape
    # error per element at most half a step of its group
    step = (
        torch.tensor(ss).reshape(3, 1, 1) if scale == "slot" else torch.tensor(ss).reshape(3, 5, 1)
    )
    assert ((back - x).abs() <= step / 2 + 1e-7).all()


def test_per_token_scale_keeps_small_tokens_that_per_slot_rounds_away() -> None:
    x = tokens(seed=2)
    slot = reconstruction_error(x, unpack_tokens(pack_tokens(x, "int8", "slot")))
    tok = reconstruction_error(x, unpack_tokens(pack_tokens(x, "int8", "token")))
    assert tok["min_cosine"] > 0.999 > slot["min_cosine"]
    assert tok["rel_rmse"] < slot["rel_rmse"]


def test_int8_error_on_realistic_tokens_is_small() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(16, 49, 1280, generator=g).relu()  # a ReLU feature map, like MobileNetV2
    err = reconstruction_error(x, unpack_tokens(pack_tokens(x, "int8", "token")))
    f16 = reconstruction_error(x, unpack_tokens(pack_tokens(x)))
    print(f"\nint8/token: {err}\nfloat16:    {f16}")
    assert err["rel_rmse"] < 0.02 and err["min_cosine"] > 0.999
    assert f16["rel_rmse"] < err["rel_rmse"]


def test_zero_groups_empty_and_bad_input() -> None:
    x = torch.zeros(2, 3, 4)
    x[1, 2] = 5.0
    for scale in ("slot", "token"):
        back = unpack_tokens(pack_tokens(x, "int8", scale))  # type: ignore[arg-type]
        assert torch.isfinite(back).all() and torch.equal(back, x)
    empty = pack_tokens(torch.zeros(0, 3, 4), "int8")
    assert empty.nbytes == 0 and unpack_tokens(empty).shape == (0, 3, 4)
    with pytest.raises(EncoderError, match="finite"):
        pack_tokens(torch.tensor([[[float("nan")]]]), "int8")
    with pytest.raises(ConfigError):
        pack_tokens(x, "int4")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        pack_tokens(x[0])
    assert reconstruction_error(x, x) == {"max_abs": 0.0, "rel_rmse": 0.0, "min_cosine": 1.0}

"""``EncoderConfig.compile``: the forward under torch.compile, kept only when its tokens
match eager on the first batch. The fallback paths run with compilers that fail or
miscompile on purpose; the real torch.compile runs on a tiny CLIP (skipped only when
torch.compile itself cannot compile a trivial function here)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from videomem.encoders import load_encoder
from videomem.encoders.compiled import TOLERANCE, CompiledForward, parity_error
from videomem.encoders.config import EncoderConfig
from videomem.encoders.registry import load_encoder_from_config
from videomem.encoders.testing import build_tiny


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny("clip", tmp_path_factory.mktemp("compile") / "clip")


def frames(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_parity_error_is_relative_to_the_eager_scale() -> None:
    want = torch.tensor([[1.0, -4.0], [2.0, 0.0]])
    assert parity_error(want.clone(), want) == 0.0
    assert parity_error(want + torch.tensor([[0.0, 0.4], [0.0, 0.0]]), want) == pytest.approx(0.1)
    assert parity_error(want[:1], want) == float("inf")  # shapes differ
    assert parity_error(want * float("nan"), want) == float("inf")


def test_compile_flag_is_outside_the_fingerprint(clip_dir: Path) -> None:
    plain = EncoderConfig(model=str(clip_dir), device="cpu")
    flagged = EncoderConfig(model=str(clip_dir), device="cpu", compile=True)
    assert plain.hashed_dict() == flagged.hashed_dict()
    a = load_encoder_from_config(plain)
    b = load_encoder_from_config(flagged)
    assert a.fingerprint == b.fingerprint
    assert getattr(a, "compiled", None) is None and b.compiled is not None  # type: ignore[attr-defined]
    assert b.compiled.state == "pending"  # type: ignore[attr-defined]


def miscompile(fn):  # noqa: ANN001, ANN201
    """A 'compiler' whose output is wrong: tokens shifted by a visible amount."""

    def wrong(pixels: torch.Tensor):  # noqa: ANN202
        tok, emb = fn(pixels)
        return tok + 0.5 * tok.abs().max(), emb

    return wrong


def broken_compiler(fn):  # noqa: ANN001, ANN201
    raise RuntimeError("InductorError: no C++ compiler found (injected)")


def fails_after_first(fn):  # noqa: ANN001, ANN201
    calls = []

    def once(pixels: torch.Tensor):  # noqa: ANN202
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("recompilation for a new batch size failed (injected)")
        return fn(pixels)

    return once


@pytest.mark.parametrize(
    ("compiler", "why"),
    [
        (miscompile, "differ from eager"),
        (broken_compiler, "torch.compile failed"),
        (fails_after_first, "compiled forward failed"),
    ],
    ids=["miscompiled", "cannot-compile", "fails-later"],
)
def test_fallback_to_eager_keeps_eager_tokens(
    clip_dir: Path, compiler, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    eager = load_encoder(clip_dir, "cpu", batch_size=4)
    enc = load_encoder(clip_dir, "cpu", batch_size=4)
    compiled = enc.compile_forward(compiler=compiler)  # type: ignore[attr-defined]
    x = frames(10, enc.input_size[0])  # three chunks: 4, 4, 2
    with caplog.at_level(logging.WARNING, logger="videomem.encoders.compiled"):
        got = enc.encode(x)
    assert compiled.state == "eager" and why in (compiled.reason or "")
    assert any("running eager" in r.message for r in caplog.records)
    ref = eager.encode(x)
    assert torch.equal(got.tokens, ref.tokens) and torch.equal(got.embedding, ref.embedding)
    again = enc.encode(frames(3, enc.input_size[0], seed=1))  # stays eager for good
    assert torch.equal(again.tokens, eager.encode(frames(3, enc.input_size[0], seed=1)).tokens)


def test_out_of_memory_while_checking_parity_is_not_a_compile_failure() -> None:
    def eager(pixels: torch.Tensor):  # noqa: ANN202
        return pixels.mean(dim=(2, 3)).unsqueeze(1), None

    def compiler(fn):  # noqa: ANN001, ANN202
        def run(pixels: torch.Tensor):  # noqa: ANN202
            cls = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
            raise cls("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")

        return run

    fwd = CompiledForward(eager, torch.float32, compiler=compiler)
    with pytest.raises(RuntimeError, match="out of memory"):
        fwd(torch.ones(2, 3, 4, 4))
    assert fwd.state == "pending"  # the encoder retries a smaller chunk; parity not decided


def test_a_faithful_compiler_is_kept_after_parity() -> None:
    calls: list[str] = []

    def eager(pixels: torch.Tensor):  # noqa: ANN202
        calls.append("eager")
        return pixels.mean(dim=(2, 3)).unsqueeze(1), None

    def compiler(fn):  # noqa: ANN001, ANN202
        def run(pixels: torch.Tensor):  # noqa: ANN202
            calls.append("compiled")
            return pixels.mean(dim=(2, 3)).unsqueeze(1) * (1 + 1e-6), None

        return run

    fwd = CompiledForward(eager, torch.float32, compiler=compiler)
    fwd(torch.ones(2, 3, 4, 4))
    assert fwd.state == "compiled" and fwd.error is not None and fwd.error < 1e-5
    fwd(torch.ones(2, 3, 4, 4))
    assert calls == ["eager", "compiled", "compiled"]  # checked once, then compiled only


def _torch_compile_runs() -> str | None:
    """Why torch.compile cannot run here (None when it compiles a trivial function)."""
    try:
        out = torch.compile(lambda t: torch.sin(t) * 2)(torch.ones(4))
    except Exception as err:  # no C++ toolchain, unsupported Python, …
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    if not torch.allclose(out, torch.sin(torch.ones(4)) * 2):
        return "torch.compile returned wrong values for sin(x) * 2"
    return None


@pytest.mark.slow
def test_torch_compile_matches_eager_on_a_tiny_model(clip_dir: Path) -> None:
    why = _torch_compile_runs()
    if why is not None:
        pytest.skip(f"torch.compile cannot run here: {why}")
    eager = load_encoder(clip_dir, "cpu", batch_size=4)
    enc = load_encoder_from_config(
        EncoderConfig(model=str(clip_dir), device="cpu", batch_size=4, compile=True)
    )
    x = frames(8, enc.input_size[0])
    got = enc.encode(x)
    compiled = enc.compiled  # type: ignore[attr-defined]
    assert compiled.state == "compiled", compiled.reason
    assert compiled.error <= TOLERANCE[torch.float32]
    ref = eager.encode(x)
    assert parity_error(got.tokens, ref.tokens) <= TOLERANCE[torch.float32]
    # later batches run compiled only: still within tolerance of eager
    y = frames(4, enc.input_size[0], seed=3)
    assert parity_error(enc.encode(y).tokens, eager.encode(y).tokens) <= TOLERANCE[torch.float32]
    assert compiled.state == "compiled"

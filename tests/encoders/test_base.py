"""The encoder contract, registry, loading rules and shared helpers (encoders/contract,
registry, hf, fingerprint, preprocess), exercised through real tiny checkpoints loaded
with from_pretrained."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from videomem.encoders import FrameEncoder, TextEncoder, load_encoder
from videomem.encoders.fingerprint import Fingerprint, fingerprint, weights_identity
from videomem.encoders.hf import load_config, resolve_device, resolve_dtype
from videomem.encoders.preprocess import timestamps_tensor, to_pixel_tensor
from videomem.encoders.registry import FAMILIES, family_factory
from videomem.encoders.testing import build_tiny
from videomem.pipeline.errors import EncoderError, VideomemError
from videomem.pipeline.types import FrameTokens


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny("clip", tmp_path_factory.mktemp("base") / "clip")


@pytest.fixture(scope="session")
def blip2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny("blip2", tmp_path_factory.mktemp("base") / "blip2")


def frames(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


# ------------------------------------------------------------------ registry


def test_registry_picks_family_from_the_checkpoint_config(clip_dir: Path, blip2_dir: Path) -> None:
    from videomem.encoders.blip2 import Blip2Encoder
    from videomem.encoders.clip import ContrastiveEncoder

    # nothing names the family: it comes from config.json's model_type
    assert isinstance(load_encoder(clip_dir), ContrastiveEncoder)
    assert isinstance(load_encoder(str(blip2_dir)), Blip2Encoder)


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_every_family_in_the_table_has_its_factory(model_type: str) -> None:
    # a missing module or factory is an import/attribute error here: the test fails
    factory = family_factory(model_type)
    assert callable(factory)
    assert factory.__module__ == FAMILIES[model_type].partition(":")[0]


def test_unsupported_model_type_is_an_encoder_error(tmp_path: Path) -> None:
    from transformers import BertConfig

    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path)
    with pytest.raises(EncoderError, match=r"'bert' is not a supported.*clip"):
        load_encoder(tmp_path)


def test_unknown_model_type_string_is_an_encoder_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no_such_model_type"}))
    with pytest.raises(EncoderError):
        load_encoder(tmp_path)


def test_directory_without_config_is_an_encoder_error(tmp_path: Path) -> None:
    with pytest.raises(EncoderError, match="not a usable Hugging Face checkpoint"):
        load_encoder(tmp_path)


def test_hub_id_offline_names_the_remedy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # so the id cannot resolve as a relative directory
    with pytest.raises(EncoderError) as err:
        load_encoder("videomem-tests/no-such-model")
    msg = str(err.value)
    assert "no-such-model" in msg
    assert "local" in msg and "checkpoint directory" in msg and "HF_HOME" in msg
    assert isinstance(err.value, VideomemError)


def test_missing_directory_is_not_mistaken_for_a_hub_id(tmp_path: Path) -> None:
    for missing in (tmp_path / "nope", "./nope", "models/clip/nope"):
        with pytest.raises(EncoderError, match="no such checkpoint directory"):
            load_encoder(missing)


def test_a_file_is_not_a_checkpoint(tmp_path: Path) -> None:
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"")
    with pytest.raises(EncoderError, match="expected a checkpoint directory"):
        load_config(f)


def test_bin_only_checkpoint_is_refused(clip_dir: Path, tmp_path: Path) -> None:
    """safetensors only: a pickle checkpoint is never unpickled."""
    from safetensors.torch import load_file

    ckpt = tmp_path / "bin_clip"
    shutil.copytree(clip_dir, ckpt)
    state = load_file(ckpt / "model.safetensors")
    (ckpt / "model.safetensors").unlink()
    torch.save(state, ckpt / "pytorch_model.bin")
    with pytest.raises(EncoderError, match="safetensors"):
        load_encoder(ckpt)


def test_unknown_option_is_an_encoder_error(clip_dir: Path, blip2_dir: Path) -> None:
    with pytest.raises(EncoderError, match="unknown encoder option"):
        load_encoder(clip_dir, layr=-2)
    with pytest.raises(EncoderError, match="unknown encoder option"):
        load_encoder(blip2_dir, pool=2)


def test_batch_size_must_be_positive(clip_dir: Path) -> None:
    with pytest.raises(EncoderError, match="batch_size"):
        load_encoder(clip_dir, batch_size=0)


# ------------------------------------------------------------------ contract


def test_encoders_satisfy_the_protocols(clip_dir: Path, blip2_dir: Path) -> None:
    clip = load_encoder(clip_dir)
    blip2 = load_encoder(blip2_dir)
    assert isinstance(clip, FrameEncoder) and isinstance(blip2, FrameEncoder)
    assert isinstance(clip, TextEncoder)
    assert not isinstance(blip2, TextEncoder)  # no text tower in a shared space


@pytest.mark.parametrize("family", ["clip", "blip2"])
def test_encode_returns_cpu_float32_frame_tokens(
    family: str, clip_dir: Path, blip2_dir: Path
) -> None:
    enc = load_encoder(clip_dir if family == "clip" else blip2_dir)
    ts = [0.5, 1.5, 2.5]
    out = enc.encode(frames(3), ts)
    assert isinstance(out, FrameTokens)
    assert out.tokens.shape == (3, enc.tokens_per_frame, enc.dim)
    assert out.embedding is not None and out.embedding.shape == (3, enc.embed_dim)
    assert out.tokens.dtype == out.embedding.dtype == torch.float32
    assert out.tokens.device.type == "cpu"
    assert out.timestamps.dtype == torch.float64 and out.timestamps.tolist() == ts
    assert torch.isfinite(out.tokens).all()
    # torch tensors are accepted as well as numpy arrays, with the same result
    again = enc.encode(torch.from_numpy(frames(3)), ts)
    torch.testing.assert_close(again.tokens, out.tokens, rtol=0, atol=0)


@pytest.mark.parametrize("family", ["clip", "blip2"])
def test_batch_splitting_gives_the_same_tokens(
    family: str, clip_dir: Path, blip2_dir: Path
) -> None:
    path = clip_dir if family == "clip" else blip2_dir
    x = frames(7, seed=3)
    whole = load_encoder(path, batch_size=32).encode(x)
    split = load_encoder(path, batch_size=3).encode(x)  # chunks of 3, 3, 1
    torch.testing.assert_close(split.tokens, whole.tokens, rtol=0, atol=1e-5)
    torch.testing.assert_close(split.embedding, whole.embedding, rtol=0, atol=1e-5)
    # each frame is encoded independently of its batch-mates
    one = load_encoder(path, batch_size=1).encode(x[4:5])
    torch.testing.assert_close(one.tokens[0], whole.tokens[4], rtol=0, atol=1e-5)


def test_empty_batch(clip_dir: Path) -> None:
    enc = load_encoder(clip_dir)
    out = enc.encode(np.zeros((0, 32, 32, 3), np.uint8))
    assert out.tokens.shape == (0, enc.tokens_per_frame, enc.dim)
    assert out.embedding is not None and out.embedding.shape == (0, enc.embed_dim)
    assert len(out) == 0


def test_bad_frames_are_encoder_errors(clip_dir: Path) -> None:
    enc = load_encoder(clip_dir)
    with pytest.raises(EncoderError, match="decode with size=encoder.input_size"):
        enc.encode(frames(2, size=48))
    with pytest.raises(EncoderError, match="uint8"):
        enc.encode(frames(2).astype(np.float32))
    with pytest.raises(EncoderError, match="uint8"):
        enc.encode(frames(2)[..., :1])
    with pytest.raises(EncoderError, match="timestamps"):
        enc.encode(frames(2), [0.0])


def test_read_only_frames_from_a_pipe_encode_without_warnings(clip_dir: Path) -> None:
    enc = load_encoder(clip_dir)
    x = frames(2)
    ro = np.frombuffer(x.tobytes(), dtype=np.uint8).reshape(x.shape)  # what a pipe gives
    assert not ro.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = enc.encode(ro)
    torch.testing.assert_close(out.tokens, enc.encode(x).tokens, rtol=0, atol=0)


# ------------------------------------------------------------------ fingerprint


def test_fingerprint_is_stable_and_tracks_choices(clip_dir: Path, blip2_dir: Path) -> None:
    a = load_encoder(clip_dir).fingerprint
    assert a == load_encoder(clip_dir).fingerprint  # a second load
    assert a == load_encoder(clip_dir, layer=-2).fingerprint  # the default, spelt out
    assert a == load_encoder(clip_dir, layer=2).fingerprint  # the same layer, from the front
    assert a == load_encoder(clip_dir, batch_size=1).fingerprint  # speed knob only
    others = {
        load_encoder(clip_dir, layer=-1).fingerprint,
        load_encoder(clip_dir, pool=2).fingerprint,
        load_encoder(clip_dir, dtype="bfloat16").fingerprint,
    }
    assert a not in others and len(others) == 3
    b = load_encoder(blip2_dir).fingerprint
    assert b != load_encoder(blip2_dir, tokens="projected").fingerprint
    assert "bfloat16" in load_encoder(clip_dir, dtype="bfloat16").fingerprint


def test_weights_identity_follows_content_not_file_times(clip_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    copy = tmp_path / "copy"
    copy.mkdir()
    for f in clip_dir.iterdir():
        shutil.copyfile(f, copy / f.name)  # new mtimes, same bytes
    assert weights_identity(str(copy)) == weights_identity(str(clip_dir))
    assert (
        Fingerprint.parse(load_encoder(copy).fingerprint).digest
        == Fingerprint.parse(load_encoder(clip_dir).fingerprint).digest
    )

    state = load_file(copy / "model.safetensors")
    key = "vision_model.post_layernorm.weight"
    state[key] = state[key] + 1.0  # a fine-tune: same names, shapes and size
    save_file(state, copy / "model.safetensors", metadata={"format": "pt"})
    assert weights_identity(str(copy)) != weights_identity(str(clip_dir))
    assert load_encoder(copy).fingerprint != load_encoder(clip_dir).fingerprint
    # hub ids are named by their commit
    assert weights_identity("org/model", "abc123") == "org/model@abc123"


def test_fingerprint_helper_ignores_bookkeeping_fields() -> None:
    cfg = {"hidden_size": 8, "_name_or_path": "/somewhere", "transformers_version": "5"}
    moved = {"hidden_size": 8, "_name_or_path": "/elsewhere", "transformers_version": "6"}
    assert fingerprint("m", cfg, torch.float32, "w") == fingerprint("m", moved, torch.float32, "w")
    assert fingerprint("m", cfg, torch.float32, "w") != fingerprint(
        "m", {"hidden_size": 9}, torch.float32, "w"
    )


# ------------------------------------------------------------------ helpers


def test_to_pixel_tensor_matches_a_per_pixel_reference() -> None:
    x = frames(2, size=5, seed=7)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    got = to_pixel_tensor(x, mean, std, rescale=1 / 255)
    assert got.shape == (2, 3, 5, 5) and got.dtype == torch.float32
    ref = np.empty((2, 3, 5, 5), np.float64)
    for b in range(2):
        for c in range(3):
            for i in range(5):
                for j in range(5):
                    ref[b, c, i, j] = (x[b, i, j, c] / 255 - mean[c]) / std[c]
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-6)
    assert to_pixel_tensor(x, mean, std, dtype=torch.bfloat16).dtype == torch.bfloat16


def test_resolve_device_and_dtype() -> None:
    cpu = torch.device("cpu")
    assert resolve_dtype(None, cpu) == torch.float32
    assert resolve_dtype(None, torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("fp16", cpu) == torch.float16
    assert resolve_dtype(torch.bfloat16, cpu) == torch.bfloat16
    with pytest.raises(EncoderError, match="unknown dtype"):
        resolve_dtype("int3", cpu)
    assert resolve_device("cpu") == cpu
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(EncoderError, match="CUDA is not available"):
            resolve_device("cuda")


def test_timestamps_tensor() -> None:
    assert timestamps_tensor(None, 3).tolist() == [0.0, 1.0, 2.0]
    assert timestamps_tensor(np.array([1.5, 2.5]), 2).dtype == torch.float64
    with pytest.raises(EncoderError):
        timestamps_tensor([1.0, 2.0], 3)


def test_tiny_checkpoint_built_by_several_processes_at_once(tmp_path: Path) -> None:
    # Ray actors given `--model tiny` all ask for the cached checkpoint at the same time
    from concurrent.futures import ProcessPoolExecutor

    from videomem.encoders.testing import tiny_checkpoint

    with ProcessPoolExecutor(3) as pool:
        outs = list(pool.map(tiny_checkpoint, ["llava"] * 3, [tmp_path] * 3))
    assert len(set(outs)) == 1 and (outs[0] / "config.json").is_file()
    assert [p.name for p in outs[0].parent.iterdir()] == ["llava"]  # no leftovers
    assert isinstance(load_encoder(outs[0], device="cpu"), FrameEncoder)


def test_tiny_checkpoint_cache_is_keyed_by_builder_source_and_transformers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a changed builder or a transformers upgrade must build afresh, not reuse
    import transformers
    from videomem.encoders import testing

    first = testing.tiny_checkpoint("llava", tmp_path)
    assert testing.tiny_checkpoint("llava", tmp_path) == first
    assert first.name == "llava"  # fingerprints name a checkpoint by its folder
    monkeypatch.setattr(transformers, "__version__", transformers.__version__ + ".post9")
    upgraded = testing.tiny_checkpoint("llava", tmp_path)
    assert upgraded != first and (upgraded / "config.json").is_file()
    monkeypatch.undo()
    key = testing.tiny_cache_key("llava")
    real_read = Path.read_bytes
    for edited in ("llava.py", "parts.py"):  # the family's builders, the shared parts
        monkeypatch.setattr(
            Path,
            "read_bytes",
            lambda self, name=edited: real_read(self) + (b"# edited" if self.name == name else b""),
        )
        assert testing.tiny_cache_key("llava") != key, edited
        monkeypatch.setattr(Path, "read_bytes", real_read)
    assert testing.tiny_cache_key("llava") == key


HUB_SCRIPT = """
import sys
from videomem.encoders.registry import load_encoder
from videomem.pipeline.errors import EncoderError
try:
    load_encoder("someorg/not-cached-model")
except EncoderError as e:
    print("ERROR", e)
"""


@pytest.mark.parametrize("offline", [False, True])
def test_unreachable_hub_fails_at_once_without_retries(tmp_path: Path, offline: bool) -> None:
    """An uncached hub id with no reachable hub: one request at most, then the clear
    error (the hub client alone retries every file five times with backoff). The "hub"
    is a loopback socket that counts connections and hangs up."""
    import socket
    import subprocess
    import sys
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    connections = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            connections.append(1)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    env = {
        **os.environ,
        "HF_ENDPOINT": f"http://127.0.0.1:{server.getsockname()[1]}",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1" if offline else "0",
    }
    try:
        out = subprocess.run(
            [sys.executable, "-c", HUB_SCRIPT], env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        stop.set()
        thread.join()
        server.close()
    assert "ERROR cannot load model 'someorg/not-cached-model'" in out.stdout, out.stderr
    assert "Pass a local checkpoint directory" in out.stdout
    assert "Retrying" not in out.stderr
    # the hub client alone would connect six times (five retries) per file
    assert len(connections) == 0 if offline else 1 <= len(connections) <= 2

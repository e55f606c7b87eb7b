"""MovieChat's conversion and its frame and video sides, against a reference forward
transcribed from MovieChat's own code (``eva_vit.py``, ``Qformer.py``,
``moviechat.py``: ``encode_image``, ``encode_long_video``) that reads the *unconverted*
tensors by MovieChat's names; plus the conversion's refusals."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from videomem.encoders.moviechat import breakpoint_frames, hierarchical_table, read_parts
from videomem.encoders.moviechat_convert import ConvertError, Heads, convert_moviechat
from videomem.encoders.registry import load_encoder
from videomem.encoders.testing import moviechat as tiny

HEADS = Heads(**tiny.HEADS)
MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tiny.TinyMovieChat:
    return tiny.build_tiny_moviechat_inputs(tmp_path_factory.mktemp("moviechat_inputs"))


@pytest.fixture(scope="module")
def converted(inputs: tiny.TinyMovieChat, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("moviechat") / "ckpt"
    path, _ = convert_moviechat(inputs.checkpoint, inputs.qformer, inputs.llm, out, heads=HEADS)
    return path


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


# ----------------------------------------------------- reference, from MovieChat's code


def _attention(s, p, x, kv, heads):  # Qformer.py BertAttention (self or cross)
    q = F.linear(x, s[f"{p}.self.query.weight"], s[f"{p}.self.query.bias"])
    k = F.linear(kv, s[f"{p}.self.key.weight"], s[f"{p}.self.key.bias"])
    v = F.linear(kv, s[f"{p}.self.value.weight"], s[f"{p}.self.value.bias"])

    def split(t):
        return t.view(t.shape[0], t.shape[1], heads, -1).permute(0, 2, 1, 3)

    q, k, v = split(q), split(k), split(v)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    ctx = (scores.softmax(-1) @ v).permute(0, 2, 1, 3).reshape(x.shape)
    h = F.linear(ctx, s[f"{p}.output.dense.weight"], s[f"{p}.output.dense.bias"])
    w, b = s[f"{p}.output.LayerNorm.weight"], s[f"{p}.output.LayerNorm.bias"]
    return F.layer_norm(h + x, (x.shape[-1],), w, b, eps=1e-12)


def ref_qformer(s, prefix, query, enc, freq, heads):  # BertModel(query_embeds=...).bert
    b = f"{prefix}.bert"
    w, bias = s[f"{b}.embeddings.LayerNorm.weight"], s[f"{b}.embeddings.LayerNorm.bias"]
    x = F.layer_norm(query, (query.shape[-1],), w, bias, eps=1e-12)
    i = 0
    while f"{b}.encoder.layer.{i}.attention.self.query.weight" in s:
        lay = f"{b}.encoder.layer.{i}"
        x = _attention(s, f"{lay}.attention", x, x, heads)
        if i % freq == 0:
            x = _attention(s, f"{lay}.crossattention", x, enc, heads)
        h = F.gelu(
            F.linear(
                x,
                s[f"{lay}.intermediate_query.dense.weight"],
                s[f"{lay}.intermediate_query.dense.bias"],
            )
        )
        h = F.linear(h, s[f"{lay}.output_query.dense.weight"], s[f"{lay}.output_query.dense.bias"])
        w, bias = s[f"{lay}.output_query.LayerNorm.weight"], s[f"{lay}.output_query.LayerNorm.bias"]
        x = F.layer_norm(h + x, (x.shape[-1],), w, bias, eps=1e-12)
        i += 1
    return x


def ref_encode_image(s, pixels, heads):
    """eva_vit.VisionTransformer.forward_features + ln_vision + Qformer.bert."""
    ve = "visual_encoder"
    w = s[f"{ve}.patch_embed.proj.weight"]
    x = (
        F.conv2d(pixels, w, s[f"{ve}.patch_embed.proj.bias"], stride=w.shape[-1])
        .flatten(2)
        .transpose(1, 2)
    )
    x = (
        torch.cat([s[f"{ve}.cls_token"].expand(x.shape[0], -1, -1), x], dim=1)
        + s[f"{ve}.pos_embed"]
    )
    d, i = x.shape[-1], 0
    while f"{ve}.blocks.{i}.norm1.weight" in s:
        b = f"{ve}.blocks.{i}"
        h = F.layer_norm(x, (d,), s[f"{b}.norm1.weight"], s[f"{b}.norm1.bias"], eps=1e-6)
        qb, vb = s[f"{b}.attn.q_bias"], s[f"{b}.attn.v_bias"]
        qkv = F.linear(h, s[f"{b}.attn.qkv.weight"], torch.cat([qb, torch.zeros_like(vb), vb]))
        qkv = qkv.reshape(x.shape[0], x.shape[1], 3, heads.vision, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * (d // heads.vision) ** -0.5, qkv[1], qkv[2]
        h = ((q @ k.transpose(-2, -1)).softmax(-1) @ v).transpose(1, 2).reshape(x.shape)
        x = x + F.linear(h, s[f"{b}.attn.proj.weight"], s[f"{b}.attn.proj.bias"])
        h = F.layer_norm(x, (d,), s[f"{b}.norm2.weight"], s[f"{b}.norm2.bias"], eps=1e-6)
        h = F.gelu(F.linear(h, s[f"{b}.mlp.fc1.weight"], s[f"{b}.mlp.fc1.bias"]))
        x = x + F.linear(h, s[f"{b}.mlp.fc2.weight"], s[f"{b}.mlp.fc2.bias"])
        i += 1
    embeds = F.layer_norm(x, (d,), s["ln_vision.weight"], s["ln_vision.bias"])  # eps 1e-5
    query = s["query_tokens"].expand(x.shape[0], -1, -1)
    return ref_qformer(s, "Qformer", query, embeds, 2, heads.qformer)


def ref_table(p, n, alpha=0.01):
    """MovieChat.__init__'s loops, verbatim in shape."""
    u = [(p_i - alpha * p[0]) / (1 - alpha) for p_i in p[:n]]
    rows = [(alpha * u[i] + (1 - alpha) * u[j]).unsqueeze(0) for i in range(n) for j in range(n)]
    return torch.cat(rows, dim=0)


def ref_encode_long_video(s, frames, heads, n=16):
    """encode_long_video's tail: positions from the table, video Q-Former, llama_proj."""
    table = ref_table(s["video_frame_position_embedding.weight"], n)
    x = (frames + table[: len(frames)].unsqueeze(-2)).reshape(1, -1, frames.shape[-1])
    hidden = ref_qformer(s, "video_Qformer", s["video_query_tokens"], x, 1, heads.video_qformer)
    return hidden[0], F.linear(hidden[0], s["llama_proj.weight"], s["llama_proj.bias"])


def ref_breakpoint(long, short, cur, limit):
    """encode_long_video(middle_video=True)'s cut, transcribed."""
    long_b, short_b = list(long), list(short)
    while len(long_b) + len(short_b) + 1 > limit:
        if len(short_b) != 0:
            short_b.pop(0)
        else:
            long_b.pop(0)
    if len(long_b) == 0:
        return torch.stack(short_b)
    return torch.cat([torch.stack(long_b + short_b), cur])


# ------------------------------------------------------------------------------ tests


def test_frame_tokens_match_moviechat_encode_image(inputs, converted) -> None:
    enc = load_encoder(str(converted), "cpu", "float32")
    frames = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    ours = enc.encode(frames).tokens
    pixels = (torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255 - MEAN) / STD
    ref = ref_encode_image(_state(inputs.qformer), pixels, HEADS)
    assert ours.shape == (3, tiny.QUERIES, tiny.QF)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    assert ref.std() > 0.1  # not a degenerate comparison


def test_hierarchical_table_formula() -> None:
    p = torch.randn(32, 8)
    torch.testing.assert_close(
        hierarchical_table(p, 16, 0.01), ref_table(p, 16), atol=1e-6, rtol=1e-6
    )
    assert hierarchical_table(p, 16, 0.01).shape == (256, 8)


def test_table_is_built_from_the_trained_embedding(inputs, converted) -> None:
    from videomem.encoders.hf import LoadSettings, load_config

    config = load_config(str(converted))
    model = read_parts(
        str(converted),
        config,
        ("video",),
        LoadSettings(torch.device("cpu"), torch.float32, 1, False, ""),
    )
    trained = _state(inputs.checkpoint)["video_frame_position_embedding.weight"]
    torch.testing.assert_close(model.position_table(), ref_table(trained, 16))
    untrained = torch.nn.Embedding(*trained.shape).weight.detach()  # what MovieChat's __init__ sees
    assert not torch.allclose(model.position_table(), ref_table(untrained, 16), atol=1e-3)
    assert config.position_table == "trained"


@pytest.mark.parametrize("mode", ["global", "breakpoint"])
def test_video_side_matches_encode_long_video(inputs, converted, mode) -> None:
    from videomem.encoders.hf import LoadSettings, load_config

    config = load_config(str(converted))
    model = read_parts(
        str(converted),
        config,
        ("video",),
        LoadSettings(torch.device("cpu"), torch.float32, 1, False, ""),
    )
    g = torch.Generator().manual_seed(3)
    if mode == "global":
        frames = torch.randn(20, tiny.QUERIES, tiny.QF, generator=g)
    else:  # long 250 + short 10 + current: cut to the table's 256 frames
        long = torch.randn(250, tiny.QUERIES, tiny.QF, generator=g)
        short = torch.randn(10, tiny.QUERIES, tiny.QF, generator=g)
        cur = torch.randn(1, tiny.QUERIES, tiny.QF, generator=g)
        frames = breakpoint_frames(long, short, cur, 256)
        torch.testing.assert_close(frames, ref_breakpoint(long, short, cur, 256), atol=0, rtol=0)
        assert len(frames) == 256
    hidden, embeds = ref_encode_long_video(_state(inputs.checkpoint), frames, HEADS)
    with torch.inference_mode():
        torch.testing.assert_close(model.video_hidden(frames), hidden, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.video_embeds(frames), embeds, atol=1e-5, rtol=1e-5)
    assert embeds.shape == (tiny.VIDEO_QUERIES, tiny.LLM)


def test_breakpoint_cut_edge_cases() -> None:
    q = lambda n: torch.randn(n, 2, 3)  # noqa: E731
    for lm, s in [(0, 5), (3, 0), (300, 4), (10, 300), (255, 0), (0, 300)]:
        long, short, cur = q(lm), q(s), q(1)
        if lm == 0 and s == 0:
            continue
        torch.testing.assert_close(
            breakpoint_frames(long, short, cur, 256), ref_breakpoint(long, short, cur, 256)
        )


def test_every_input_key_is_mapped_or_dropped(inputs, tmp_path) -> None:
    _, report = convert_moviechat(
        inputs.checkpoint, inputs.qformer, inputs.llm, tmp_path / "c", heads=HEADS
    )
    seen = {k for ks in report.mapped.values() for k in ks} | set(report.dropped)
    for where, path in (("qformer", inputs.qformer), ("checkpoint", inputs.checkpoint)):
        assert {f"{where}:{k}" for k in _state(path)} <= seen
    assert "qformer:Qformer.cls.predictions.transform.dense.weight" in report.dropped
    assert report.mapped["llama_proj.weight"] == ["checkpoint:llama_proj.weight"]


# ------------------------------------------------------------------------- refusals


def _with(tmp_path: Path, src: Path, edit) -> Path:
    state = dict(_state(src))
    edit(state)
    out = tmp_path / src.name
    torch.save({"model": state}, out)
    return out


class _Code:  # any object pickled by reference: weights_only must refuse it
    pass


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("video_query_tokens"), "video_query_tokens"),
        (
            lambda s: s.update({"video_Qformer.extra_head.weight": torch.zeros(2)}),
            "video_Qformer.extra_head.weight",
        ),
        (lambda s: s.update({"llama_proj.bias": torch.zeros(7)}), "llama_proj.bias"),
        (lambda s: s.update({"cfg": _Code()}), "weights_only"),
    ],
    ids=["missing", "extra", "shape", "pickle-with-code"],
)
def test_bad_checkpoint_is_refused_by_name(inputs, tmp_path, edit, message) -> None:
    bad = _with(tmp_path, inputs.checkpoint, edit)
    with pytest.raises(ConvertError, match=message.replace(".", r"\.")):
        convert_moviechat(bad, inputs.qformer, inputs.llm, tmp_path / "out", heads=HEADS)
    assert not (tmp_path / "out").exists()


def test_missing_frame_side_key_is_refused(inputs, tmp_path) -> None:
    bad = _with(tmp_path, inputs.qformer, lambda s: s.pop("visual_encoder.blocks.1.attn.v_bias"))
    with pytest.raises(ConvertError, match=r"visual_encoder\.blocks\.1\.attn"):
        convert_moviechat(inputs.checkpoint, bad, inputs.llm, tmp_path / "out", heads=HEADS)


def test_vicuna_of_the_wrong_width_is_refused(inputs, tmp_path) -> None:
    wide = tiny.build_tiny_vicuna(tmp_path / "vicuna48", hidden=48)
    with pytest.raises(ConvertError, match="48 wide"):
        convert_moviechat(inputs.checkpoint, inputs.qformer, wide, tmp_path / "out", heads=HEADS)


def test_existing_output_is_kept_without_force(inputs, converted, tmp_path) -> None:
    out = tmp_path / "o"
    shutil.copytree(converted, out)
    with pytest.raises(ConvertError, match="exists"):
        convert_moviechat(inputs.checkpoint, inputs.qformer, inputs.llm, out, heads=HEADS)
    assert (out / "model.safetensors").is_file()

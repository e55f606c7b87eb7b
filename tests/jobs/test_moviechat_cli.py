"""``videomem models convert moviechat`` then ``videomem index --model DIR``: the
converted checkpoint indexes MovieChat's frame tokens with MovieChat's memory preset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner
from videomem.encoders.testing.moviechat import QF, QUERIES, build_tiny_moviechat_inputs
from videomem.jobs.cli import app
from videomem.jobs.index_config import memory_config
from videomem.memory.store import Store

from tests.videos import make_pattern


def invoke(env: dict[str, str], *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env=env)


@pytest.mark.slow
def test_convert_then_index_uses_moviechat_preset_and_frame_tokens(tmp_path: Path) -> None:
    env = {"VIDEOMEM_CACHE": str(tmp_path / "cache")}
    t = build_tiny_moviechat_inputs(tmp_path / "inputs")
    ckpt = tmp_path / "moviechat"
    r = invoke(env, "models", "convert", "moviechat", "--checkpoint", str(t.checkpoint),
               "--qformer", str(t.qformer), "--llm", str(t.llm), "--out", str(ckpt))  # fmt: skip
    assert r.exit_code == 0, r.output
    again = invoke(env, "models", "convert", "moviechat", "--checkpoint", str(t.checkpoint),
                   "--qformer", str(t.qformer), "--llm", str(t.llm), "--out", str(ckpt))  # fmt: skip
    assert again.exit_code == 2 and "exists" in again.output
    video = make_pattern(tmp_path / "v.mp4", 2)
    store = tmp_path / "store"
    r = invoke(env, "index", str(video), "--store", str(store), "--model", str(ckpt),
               "--fps", "2", "--device", "cpu", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    with Store(store) as st:
        (rec,) = st.list_videos()
        memory = st.load_memory(rec.video_id)
    assert rec.config.memory == memory_config("moviechat_reference")
    assert memory_config(None, model=str(ckpt)) == memory_config("moviechat_reference")
    assert memory_config(None, model="tiny") == memory_config("default")
    assert tuple(memory.tokens.shape[1:]) == (QUERIES, QF)
    for extra in ([], ["--at", "1.5"]):  # global; breakpoint (frames decoded again)
        r = invoke(env, "ask", str(video), "what happens in this video ?", *extra,
                   "--store", str(store), "--max-new-tokens", "4", "--device", "cpu",
                   "--json")  # fmt: skip
        assert r.exit_code == 0, r.output
        row = json.loads(r.stdout)
        assert row["status"] == "answered", row
        assert row["source"] == ("video" if extra else "memory"), row
    # the bulk QA job (its worker, batching, resume) with the same model
    qfile = tmp_path / "q.jsonl"
    rows = [{"video": str(video), "question": q} for q in ("what is it ?", "who is it ?")]
    rows.append({"video": str(video), "question": "what happens ?", "time_s": 1.0})
    qfile.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["qa", str(qfile), "--store", str(store), "--max-new-tokens", "3", "--device",
            "cpu", "--json", "--no-reuse", "--batch-size", "2"]  # fmt: skip
    r = invoke(env, *args)
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert (s["answered"], s["failed"]) == (3, 0), s
    s = json.loads(invoke(env, *args).stdout)  # resumed: nothing left to answer
    assert (s["answered"], s["skipped"]) == (0, 3), s

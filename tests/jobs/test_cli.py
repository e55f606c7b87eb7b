"""`videomem index / ls / show` through the real Typer app (tiny real model, real store)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner
from videomem.jobs.cli import app

from tests.videos import make_pattern


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    # `--model tiny` builds its checkpoint into VIDEOMEM_CACHE: keep it in the test tmp
    return {"VIDEOMEM_CACHE": str(tmp_path_factory.mktemp("cache"))}


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("videos")
    make_pattern(d / "a.mp4", 4)
    make_pattern(d / "b.mp4", 3, src="smptebars")
    (d / "broken.mp4").write_bytes(b"\x1a\x45\xdf\xa3" + os.urandom(1000))
    return d


@pytest.fixture(scope="module")
def indexed(videos: Path, env: dict[str, str], tmp_path_factory: pytest.TempPathFactory):
    store = tmp_path_factory.mktemp("s") / "store"
    result = invoke(
        env,
        "index", str(videos), "--store", str(store), "--model", "tiny", "--fps", "2",
        "--batch-size", "4", "--device", "cpu", "--json",
    )  # fmt: skip
    return store, result


def invoke(env: dict[str, str], *args: str):
    return CliRunner(env=env).invoke(app, list(args), catch_exceptions=False)


def test_index_json_summary(indexed) -> None:
    store, result = indexed
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["videos"], summary["indexed"], summary["failed"]) == (3, 2, 1)
    assert summary["frames"] == 8 + 6 and summary["frames_per_s"] > 0
    assert summary["failures"][0]["uri"].endswith("broken.mp4")
    assert summary["encoder_fingerprint"].startswith("llava")
    # which ffmpeg decoded, and why that one
    assert Path(summary["ffmpeg"]["path"]).exists() and summary["ffmpeg"]["version"]
    assert summary["ffmpeg"]["source"] in ("VIDEOMEM_FFMPEG", "PATH", "imageio-ffmpeg")
    # progress goes to stderr as plain lines when not on a terminal
    assert "indexed" in result.stderr and "FAILED" in result.stderr


def test_rerun_skips_and_prints_summary(indexed, videos: Path, env) -> None:
    store, _ = indexed
    r = invoke(env, "index", str(videos), "--store", str(store), "--model", "tiny",
               "--fps", "2", "--batch-size", "4", "--device", "cpu")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "0 indexed, 3 skipped, 0 failed of 3 video(s)" in r.stdout
    assert "\nffmpeg " in r.stdout


def test_ls(indexed, env) -> None:
    store, _ = indexed
    r = invoke(env, "ls", "--store", str(store), "--json")
    rows = json.loads(r.stdout)
    assert sorted(Path(x["uri"]).name for x in rows) == ["a.mp4", "b.mp4", "broken.mp4"]
    broken = next(x for x in rows if x["uri"].endswith("broken.mp4"))
    assert broken["status"] == "failed" and "broken.mp4" in broken["error"]

    text = invoke(env, "ls", "--store", str(store)).stdout
    assert "3 video(s): 2 indexed, 1 failed" in text and "error: " in text
    only = json.loads(
        invoke(env, "ls", "--store", str(store), "--status", "failed", "--json").stdout
    )
    assert len(only) == 1


def test_index_with_torchcodec_says_so(videos: Path, env: dict[str, str], tmp_path: Path) -> None:
    from tests.pipeline.test_torch_decode import WHY_NOT

    if WHY_NOT is not None:
        pytest.skip(WHY_NOT)
    store = tmp_path / "store"
    args = ["--store", str(store)]
    r = invoke(env, "index", str(videos / "a.mp4"), *args, "--model", "tiny", "--fps", "2",
               "--device", "cpu", "--decoder", "torchcodec", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    (row,) = json.loads(invoke(env, "ls", *args, "--json").stdout)
    shown = json.loads(invoke(env, "show", row["video_id"], *args, "--json").stdout)["video"]
    assert (shown["decode_decoder"], shown["decode_fallback"]) == ("torchcodec", None)
    assert (
        "decode   cpu, 1 torchcodec, exact sampling"
        in invoke(env, "show", row["video_id"], *args).stdout
    )
    bad = invoke(
        env, "index", str(videos / "a.mp4"), *args, "--model", "tiny", "--decoder", "opencv"
    )
    assert bad.exit_code == 2 and "unknown decoder" in bad.output


def test_show_text_json_and_plot(indexed, env, tmp_path: Path) -> None:
    store, _ = indexed
    rows = json.loads(invoke(env, "ls", "--store", str(store), "--json").stdout)
    a = next(x for x in rows if x["uri"].endswith("a.mp4"))

    r = invoke(env, "show", a["video_id"][:10], "--store", str(store), "--json")
    assert r.exit_code == 0, r.output
    shown = json.loads(r.stdout)
    assert shown["video"]["video_id"] == a["video_id"]
    slots = shown["slots"]
    assert len(slots) == a["slots"] and sum(s["size"] for s in slots) == 8
    assert slots[0]["start_s"] == pytest.approx(0, abs=0.3)
    assert slots[-1]["end_s"] == pytest.approx(4, abs=0.6)

    text = invoke(env, "show", a["video_id"], "--store", str(store)).stdout
    assert f"{len(slots)} slots" in text and "start_s" in text
    # the cost of the memory: per video (ls --json) and per minute of video
    assert a["stored_bytes"] > 0 and a["bytes_per_minute"] > a["stored_bytes"]  # a 4 s video
    assert "KiB per minute of video" in text
    # what decoding did
    assert (shown["video"]["decode_device"], shown["video"]["decode_parts"]) == ("cpu", 1)
    assert shown["video"]["decode_sample"] == "exact"
    assert "decode   cpu, 1 ffmpeg, exact sampling" in text
    assert shown["video"]["decode_decoder"] == "ffmpeg"

    pytest.importorskip("matplotlib")
    png = tmp_path / "slots.png"
    r = invoke(env, "show", a["video_id"], "--store", str(store), "--plot", str(png))
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    broken = next(x for x in rows if x["status"] == "failed")
    r = invoke(env, "show", broken["video_id"], "--store", str(store))
    assert r.exit_code == 0 and "failed" in r.stdout and "error" in r.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fps", "1", "--frames", "8"], "mutually exclusive"),
        (["--fps", "0"], "fps must be > 0"),
        (["--executor", "spark"], "unknown executor"),
        (["--memory-preset", "nope"], "unknown memory preset"),
        (["--start", "3", "--end", "1"], "end_s must be greater than start_s"),
        (["-o", "layer"], "not KEY=VALUE"),
        (["-o", "layer=-2"], "unknown encoder options"),  # the tiny LLaVA takes none
        (["--memory-preset", "moviechat", "--threshold", "0.5"], "adaptive method only"),
        (["--threshold", "1.5"], "not a cosine"),
        (["--memory-preset", "mbc", "--max-span", "30"], "adaptive method only"),
        (["--memory-preset", "moviechat", "--keep-events"], "adaptive method only"),
        (["--max-span", "-5"], "max_span_s must be a positive number"),
        (["--token-dtype", "int4"], "unknown token dtype"),
        (["--token-dtype", "int8", "--token-scale", "row"], "unknown token scale"),
        (["--token-scale", "slot"], "--token-dtype int8 only"),
    ],
)
def test_usage_errors_exit_2(videos: Path, env, tmp_path: Path, args, message) -> None:
    r = invoke(env, "index", str(videos), "--store", str(tmp_path / "s"), "--model", "tiny", *args)
    assert r.exit_code == 2 and message in r.stderr


def test_job_level_errors_exit_2(videos: Path, env, tmp_path: Path) -> None:
    r = invoke(
        env, "index", str(tmp_path / "nope"), "--store", str(tmp_path / "s"), "--model", "tiny"
    )
    assert r.exit_code == 2 and "no such file" in r.stderr
    (tmp_path / "empty").mkdir()
    r = invoke(
        env, "index", str(tmp_path / "empty"), "--store", str(tmp_path / "s"), "--model", "tiny"
    )
    assert r.exit_code == 2 and "no video files" in r.stderr
    r = invoke(env, "index", str(videos), "--store", str(tmp_path / "s"), "--model", str(tmp_path))
    assert r.exit_code == 2 and "checkpoint" in r.stderr
    r = invoke(env, "ls", "--store", str(tmp_path / "missing"))
    assert r.exit_code == 2 and "no videomem store" in r.stderr


def test_every_video_failed_exits_1(videos: Path, env, tmp_path: Path) -> None:
    r = invoke(env, "index", str(videos / "broken.mp4"), "--store", str(tmp_path / "s"),
               "--model", "tiny", "--device", "cpu")  # fmt: skip
    assert r.exit_code == 1 and "1 failed" in r.stdout


def test_ray_job_entry_point_builds_an_index_command(
    videos: Path, env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `ray_job index …` is `videomem index …` with --executor ray unless told otherwise
    from videomem.jobs import ray_job

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SystemExit) as exc:
        ray_job.main(["index", str(videos / "a.mp4"), "--store", str(tmp_path / "s"), "--model", "tiny",
                      "--device", "cpu", "--executor", "local"])  # fmt: skip
    assert exc.value.code == 0
    with pytest.raises(SystemExit) as exc:
        ray_job.main(["index", "--help"])
    assert exc.value.code == 0
    with pytest.raises(SystemExit) as exc:  # the stage is named, never guessed
        ray_job.main([str(videos / "a.mp4")])
    assert exc.value.code == 2
    assert ray_job.STAGES["index"] == ["--executor", "ray"]


def test_export_writes_parquet_any_reader_opens(indexed, env, tmp_path: Path) -> None:
    import numpy as np
    import pyarrow.parquet as pq

    store, _ = indexed
    out = tmp_path / "export"
    r = invoke(env, "export", str(out), "--store", str(store))
    assert r.exit_code == 0, r.output
    videos = pq.read_table(out / "videos.parquet").to_pylist()
    memories = pq.read_table(out / "memories.parquet")
    assert sorted(v["status"] for v in videos) == ["failed", "indexed", "indexed"]
    indexed_ids = {v["video_id"] for v in videos if v["status"] == "indexed"}
    assert set(memories.column("video_id").to_pylist()) == indexed_ids
    row = memories.slice(0, 1).to_pylist()[0]
    tokens = np.frombuffer(row["tokens"], "<f2").reshape(row["n"], row["d"])
    assert np.isfinite(tokens).all() and tokens.shape[0] > 0


def test_relative_paths_are_stored_absolute(
    videos: Path, env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(videos.parent)
    store = tmp_path / "store"
    r = invoke(env, "index", f"../{videos.parent.name}/{videos.name}/a.mp4", "--store", str(store), "--model", "tiny",
               "--fps", "1", "--device", "cpu")  # fmt: skip
    assert r.exit_code == 0, r.output
    (row,) = json.loads(invoke(env, "ls", "--store", str(store), "--json").stdout)
    # a stored uri must name the file wherever the store is read from
    assert row["uri"] == str(videos / "a.mp4")


def test_time_window_and_encoder_options(videos: Path, env, tmp_path: Path) -> None:
    from videomem.encoders.testing import build_tiny

    clip = build_tiny("clip", tmp_path / "clip")
    store = tmp_path / "store"
    base = ["index", str(videos / "a.mp4"), "--store", str(store), "--model", str(clip),
            "--fps", "2", "--device", "cpu", "--json"]  # fmt: skip
    r = invoke(env, *base, "--start", "1", "--end", "3", "-o", "pool=1")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["indexed"] == 1 and summary["frames"] == 4  # 2 s at 2 fps
    assert "pool=1" in summary["encoder_fingerprint"]
    (row,) = json.loads(invoke(env, "ls", "--store", str(store), "--json").stdout)
    used = json.loads(row["config_json"])
    assert (used["decode"]["start_s"], used["decode"]["end_s"]) == (1.0, 3.0)
    assert used["encoder"]["options"] == {"pool": 1}
    shown = json.loads(invoke(env, "show", row["video_id"], "--store", str(store), "--json").stdout)
    slots = shown["slots"]
    assert slots[0]["start_s"] == pytest.approx(1.0) and slots[-1]["end_s"] <= 3.0 + 1e-6

    # a different layer is a different encoder: indexed again, beside the first memory
    r = invoke(env, *base, "--start", "1", "--end", "3", "-o", "pool=1", "-o", "layer=0")
    assert json.loads(r.stdout)["indexed"] == 1


def test_summary_lists_a_bounded_number_of_failures(
    env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import videomem.jobs.index as runner

    monkeypatch.setattr(runner, "MAX_FAILURES_LISTED", 2)
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(3):
        (bad / f"b{i}.mp4").write_bytes(os.urandom(500))
    store = tmp_path / "store"
    r = invoke(env, "index", str(bad), "--store", str(store), "--model", "tiny", "--json")
    summary = json.loads(r.stdout)
    assert summary["failed"] == 3 and len(summary["failures"]) == 2
    rows = json.loads(invoke(env, "ls", "--store", str(store), "--json").stdout)
    assert len(rows) == 3  # every failure is still a row in the store


def test_int8_tokens_end_to_end(indexed, videos: Path, env, tmp_path: Path) -> None:
    fp16_store, _ = indexed
    store = tmp_path / "store"
    r = invoke(env, "index", str(videos / "a.mp4"), "--store", str(store), "--model", "tiny",
               "--fps", "2", "--batch-size", "4", "--device", "cpu", "--token-dtype", "int8",
               "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    (row,) = json.loads(invoke(env, "ls", "--store", str(store), "--json").stdout)
    fp16 = json.loads(invoke(env, "ls", "--store", str(fp16_store), "--json").stdout)
    (ref,) = [x for x in fp16 if x["video_id"] == row["video_id"]]
    assert (ref["token_dtype"], ref["token_rel_rmse"]) == ("float16", None)
    # ls --json carries the encoding and its error; the key differs from float16's
    assert (row["token_dtype"], row["token_scale"]) == ("int8", "token")
    assert 0 < row["token_rel_rmse"] < 0.02 and 0.99 < row["token_min_cosine"] <= 1
    assert row["config_hash"] != ref["config_hash"] and row["slots"] == ref["slots"]
    assert json.loads(row["config_json"])["memory"]["token_dtype"] == "int8"
    assert row["stored_bytes"] < 0.75 * ref["stored_bytes"]  # the tiny model's D is small

    text = invoke(env, "show", row["video_id"], "--store", str(store)).stdout
    assert "tokens   int8, per-token scale; error: relative RMS" in text
    assert (
        "tokens   float16 (exact)"
        in invoke(env, "show", row["video_id"], "--store", str(fp16_store)).stdout
    )
    shown = json.loads(invoke(env, "show", row["video_id"], "--store", str(store), "--json").stdout)
    assert shown["video"]["token_dtype"] == "int8" and len(shown["slots"]) == row["slots"]


def test_memory_presets_and_threshold_reach_the_stored_config(
    videos: Path, env, tmp_path: Path
) -> None:
    from videomem.memory.config import MEMORY_PRESETS

    store = tmp_path / "store"
    runs = {
        "moviechat": ["--memory-preset", "moviechat"],
        "moviechat_reference": ["--memory-preset", "moviechat_reference"],
        "mbc": ["--memory-preset", "mbc"],
        "default": ["--memory-preset", "default"],
        "threshold": ["--threshold", "0.5"],
        "max_span": ["--max-span", "30"],
        "no_max_span": ["--max-span", "0"],
        "keep_events": ["--keep-events"],
    }
    hashes = {}
    for name, args in runs.items():
        r = invoke(env, "index", str(videos / "b.mp4"), "--store", str(store), "--model", "tiny",
                   "--frames", "4", "--device", "cpu", "--json", *args)  # fmt: skip
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["indexed"] == 1, name  # a new key each time
        rows = json.loads(invoke(env, "ls", "--store", str(store), "--json").stdout)
        newest = max(rows, key=lambda x: x["indexed_at"])
        hashes[name] = newest["config_hash"]
        used = json.loads(newest["config_json"])["memory"]
        want = MEMORY_PRESETS.get(name, MEMORY_PRESETS["default"]).to_dict()
        if name == "threshold":
            want["threshold"] = 0.5
        if name in ("max_span", "no_max_span"):
            want["max_span_s"] = 30.0 if name == "max_span" else None
        if name == "keep_events":
            want["keep_events"] = True
        assert used == {k: list(v) if isinstance(v, tuple) else v for k, v in want.items()}
    assert len(set(hashes.values())) == len(runs)


def test_ls_pages_through_a_store(tmp_path: Path) -> None:
    from videomem.memory.store import Store, VideoCommit

    from tests.memory.store.test_store import make_memory, record

    with Store(tmp_path / "s", writer=True) as st:
        st.commit([VideoCommit(record(f"v{i}"), make_memory(f"v{i}")) for i in range(5)])
        st.commit([VideoCommit(record("bad", status="failed", error="moov atom not found"))])
    args = ["ls", "--store", str(tmp_path / "s")]
    first = invoke({}, *args, "--limit", "4").stdout
    assert "6 video(s): 5 indexed, 1 failed; showing 1-4 (next page: --offset 4)" in first
    rest = invoke({}, *args, "--limit", "4", "--offset", "4").stdout
    assert "showing 5-6" in rest and "next page" not in rest
    shown = [ln.split()[0] for ln in (first + rest).splitlines() if ln[:1] in ("v", "b")]
    assert sorted(shown) == ["bad", "v0", "v1", "v2", "v3", "v4", "video_id", "video_id"]
    failed = json.loads(invoke({}, *args, "--status", "failed", "--json").stdout)
    assert [r["video_id"] for r in failed] == ["bad"]


def test_token_tau_stores_fewer_tokens_end_to_end(
    env, tmp_path: Path, mobilenet_dir: Path, shared_testdata: Path
) -> None:
    """The real bikes clip through ffmpeg and the real MobileNetV2, with and without
    --token-tau: the same slots, fewer stored tokens and bytes, and show says so."""
    rows = {}
    for tau in ("0", "0.1"):
        store = tmp_path / f"store{tau}"
        r = invoke(env, "index", str(shared_testdata / "bikes.mp4"), "--store", str(store),
                   "--model", str(mobilenet_dir), "--fps", "1", "--device", "cpu",
                   "--token-tau", tau, "--json")  # fmt: skip
        assert r.exit_code == 0, r.output
        (rows[tau],) = json.loads(invoke(env, "ls", "--store", str(store), "--json").stdout)
    ref, row = rows["0"], rows["0.1"]
    assert row["config_hash"] != ref["config_hash"] and row["slots"] == ref["slots"]
    assert json.loads(row["config_json"])["memory"]["token_tau"] == 0.1
    assert "token_tau" not in json.loads(ref["config_json"])["memory"]
    assert row["stored_bytes"] < ref["stored_bytes"]

    def show(tau: str, *args: str) -> str:
        return invoke(env, "show", row["video_id"], "--store", str(tmp_path / f"store{tau}"),
                      *args).stdout  # fmt: skip

    shown = json.loads(show("0.1", "--json"))
    stored = [s["tokens"] for s in shown["slots"]]
    n = shown["video"]["tokens_per_frame"]
    assert stored[0] == n and sum(stored) < n * len(stored)
    assert shown["kept_fraction"] == pytest.approx(sum(stored) / (n * len(stored)))
    text = show("0.1")
    assert f"dropping {shown['kept_fraction']:.1%} of slot tokens stored (token_tau 0.1)" in text
    assert json.loads(show("0", "--json"))["kept_fraction"] is None
    assert "dropping" not in show("0")

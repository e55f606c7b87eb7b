"""End to end through the real Typer app: index (tiny LLaVA) -> qa -> re-run skips ->
--force -> bad rows recorded; ask; caption -> show."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner
from videomem.jobs.cli import app
from videomem.memory.store import Store, VideoCommit

from tests.videos import make_pattern


def invoke(env: dict[str, str], *args: str):  # type: ignore[no-untyped-def]
    return CliRunner(env=env).invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    env = {"VIDEOMEM_CACHE": str(tmp_path_factory.mktemp("cache"))}
    d = tmp_path_factory.mktemp("videos")
    a = make_pattern(d / "a.mp4", 4)
    make_pattern(d / "b.mp4", 3, src="smptebars")
    (d / "broken.mp4").write_bytes(b"\x1a\x45\xdf\xa3" + b"\0" * 500)
    store = tmp_path_factory.mktemp("s") / "store"
    r = invoke(env, "index", str(d), "--store", str(store), "--model", "tiny", "--fps", "2",
               "--device", "cpu", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    with Store(store) as st:
        ids = {Path(rec.uri).name: rec.video_id for rec in st.list_videos()}
    return env, store, ids, a, d


def test_qa_resume_force_and_bad_rows(indexed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env, store, ids, a_path, d = indexed
    qfile = tmp_path / "q.jsonl"
    rows = [
        {"video": ids["a.mp4"], "question": "what happens in this video ?", "question_id": "q1"},
        {"video": ids["a.mp4"][:8], "question": "describe the frame", "question_id": "q2"},
        {"video": str(a_path), "question": "what is this ?", "time_s": 1.0, "question_id": "q3"},
        {"video": ids["b.mp4"], "question": "what is in the video ?"},
        {"video": "ffffffffffff", "question": "unknown video ?", "question_id": "bad1"},
        {"video": ids["broken.mp4"], "question": "failed video ?", "question_id": "bad2"},
        {"video": ids["a.mp4"], "question": "  ", "question_id": "bad3"},
        {"video": ids["a.mp4"], "question": "too late ?", "time_s": 999, "question_id": "bad4"},
        {"question": "no video column", "question_id": "bad5"},
    ]
    qfile.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    out = tmp_path / "answers.parquet"
    args = ["qa", str(qfile), "--store", str(store), "--max-new-tokens", "6", "--device", "cpu",
            "--json", "--out", str(out)]  # fmt: skip

    r = invoke(env, *args)
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert (s["rows"], s["answered"], s["failed"], s["skipped"]) == (10, 4, 6, 0)
    table = pq.read_table(out).to_pylist()
    by_id = {row["question_id"]: row for row in table}
    assert len(table) == 10
    assert by_id["q3"]["mode"] == "breakpoint" and by_id["q3"]["source"] == "video"
    assert by_id["q1"]["status"] == "answered" and by_id["q1"]["answer"] is not None
    assert by_id["q1"]["dtype"] == "float32" and by_id["q1"]["run_id"]
    assert by_id["q1"]["prompt_tokens"] > by_id["q1"]["slots"] >= 1
    assert any(row["new_tokens"] >= 1 for row in table)  # random LM: some stop at once
    assert "ffffffffffff" in by_id["bad1"]["error"]
    assert "failed to index" in by_id["bad2"]["error"]
    assert by_id["bad3"]["error"] == "empty question"
    assert "outside the video" in by_id["bad4"]["error"]
    assert "video" in by_id["bad5"]["error"]
    assert any("not JSON" in (row["error"] or "") for row in table)

    again = json.loads(invoke(env, *args).stdout)  # resume: answered rows are skipped
    assert (again["answered"], again["skipped"], again["failed"]) == (0, 4, 6)
    forced = json.loads(invoke(env, *args, "--force").stdout)
    assert (forced["answered"], forced["skipped"]) == (4, 0)
    with Store(store) as st:
        answers = st.qa.read("answers")
    assert len(answers) == 10  # replaced, never duplicated
    # greedy answers are reproducible: --force gives the same text
    assert {r["question_id"]: r["answer"] for r in answers} == {
        q: row["answer"] for q, row in by_id.items()
    }
    # other generation settings are other answers
    more = json.loads(invoke(env, *args[:-2], "--max-new-tokens", "3").stdout)
    assert more["answered"] == 4


def test_unreadable_question_file_is_a_usage_error(indexed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env, store, *_ = indexed
    r = invoke(env, "qa", str(tmp_path / "missing.jsonl"), "--store", str(store))
    assert r.exit_code == 2 and "no such question file" in r.stderr
    bad = tmp_path / "q.parquet"
    bad.write_bytes(b"not parquet")
    r = invoke(env, "qa", str(bad), "--store", str(store))
    assert r.exit_code == 2 and "cannot read" in r.stderr
    txt = tmp_path / "q.txt"
    txt.write_text("x")
    assert invoke(env, "qa", str(txt), "--store", str(store)).exit_code == 2


def test_csv_questions(indexed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env, store, ids, *_ = indexed
    q = tmp_path / "q.csv"
    q.write_text(
        f"video,question,time_s\n{ids['b.mp4']},what is this ?,\n{ids['b.mp4']},what ?,x\n"
    )
    r = invoke(env, "qa", str(q), "--store", str(store), "--json", "--max-new-tokens", "3")
    s = json.loads(r.stdout)
    assert (s["answered"], s["failed"]) == (1, 1)


def test_ask_prints_an_answer(indexed) -> None:  # type: ignore[no-untyped-def]
    env, store, ids, a_path, _ = indexed
    r = invoke(env, "ask", ids["a.mp4"][:6], "what is this ?", "--store", str(store),
               "--max-new-tokens", "5", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout)
    assert row["status"] == "answered" and row["mode"] == "global"
    r = invoke(env, "ask", str(a_path), "what is this ?", "--at", "1.5", "--store", str(store),
               "--max-new-tokens", "5")  # fmt: skip
    assert r.exit_code == 0 and r.stdout.strip() != ""
    r = invoke(env, "ask", "nope", "what ?", "--store", str(store))
    assert r.exit_code == 2 and "no video" in r.stderr


def test_caption_then_show(indexed) -> None:  # type: ignore[no-untyped-def]
    env, store, ids, *_ = indexed
    r = invoke(env, "caption", ids["a.mp4"], "--store", str(store), "--max-new-tokens", "5",
               "--dense-every", "1.0")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "1 captioned" in r.stdout
    again = invoke(env, "caption", ids["a.mp4"], "--store", str(store), "--max-new-tokens", "5",
                   "--dense-every", "1.0")  # fmt: skip
    assert "1 skipped" in again.stdout
    shown = invoke(env, "show", ids["a.mp4"], "--store", str(store))
    assert shown.exit_code == 0
    lines = [ln for ln in shown.stdout.splitlines() if ln.startswith("caption")]
    assert lines[0].split()[1] == "global" and len(lines) >= 2
    js = json.loads(invoke(env, "show", ids["a.mp4"], "--store", str(store), "--json").stdout)
    kinds = [c["kind"] for c in js["captions"]]
    assert kinds[0] == "global" and set(kinds[1:]) == {"dense"}


@pytest.mark.slow  # Ray start-up and two actors loading torch
def test_qa_on_ray_workers_matches_local(indexed, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    ray = pytest.importorskip("ray")
    from videomem.jobs.qa_job import QAJob, run_qa
    from videomem.qa import GenerationSettings

    env, store, ids, *_ = indexed
    for k, v in env.items():  # `--model tiny` resolves in the actors too
        monkeypatch.setenv(k, v)
    q = tmp_path / "q.jsonl"
    q.write_text(
        "\n".join(
            json.dumps({"video": ids[v], "question": text, "question_id": f"{v}-{i}"})
            for v in ("a.mp4", "b.mp4")
            for i, text in enumerate(["what is this ?", "describe the frame"])
        )
    )
    settings = GenerationSettings(max_new_tokens=5, system_prompt="ray")
    local = run_qa(QAJob(str(q), str(store), settings, device="cpu", executor="local"))
    with Store(store) as st:
        want = {
            r["question_id"]: r["answer"] for r in st.qa.read("answers", "settings LIKE '%ray%'")
        }
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False)
    try:
        remote = run_qa(
            QAJob(str(q), str(store), settings, device="cpu", executor="ray", workers=2, force=True)
        )
    finally:
        ray.shutdown()
    assert local.answered == remote.answered == 4 and remote.failed == 0
    with Store(store) as st:
        got = {
            r["question_id"]: r["answer"] for r in st.qa.read("answers", "settings LIKE '%ray%'")
        }
    assert got == want and len(got) == 4


def test_ask_context_flag_and_kept_slots_in_the_json_row(indexed) -> None:  # type: ignore[no-untyped-def]
    """`ask --json` past `--max-context`: with tags naming a red umbrella in one slot,
    the default (`--context relevant`) keeps that slot whole and says so in
    `kept_slots`; `--context uniform` merges as before (null) under the old key."""
    import dataclasses

    import torch
    from videomem.jobs.rows import caption_row

    env, store, ids, _, _ = indexed
    vid, n, needle = "0123456789ab", 8, 5
    with Store(store, writer=True) as st:
        rec, one = st.latest(ids["a.mp4"]), st.load_memory(ids["a.mp4"])
        # a still shot of n slots (a's first slot with a little noise): nothing visual
        # tells the needle slot apart, only its tags
        g = torch.Generator().manual_seed(0)
        noise = 0.01 * torch.randn((n, *one.tokens.shape[1:]), generator=g)
        t = torch.arange(n, dtype=torch.float64)
        mem = dataclasses.replace(
            one, video_id=vid, tokens=(one.tokens[:1].float() + noise).half(),
            sizes=torch.ones(n, dtype=torch.int64), start_s=t, end_s=t + 1, embedding=None,
            frames_seen=n, recent_tokens=None, recent_timestamps=None, thumbnails=None,
        )  # fmt: skip
        (rec,) = st.commit([VideoCommit(dataclasses.replace(rec, video_id=vid), mem)])
        st.qa.add(
            "captions",
            [
                caption_row(
                    rec,
                    "tags",
                    float(i),
                    float(i + 1),
                    "red umbrella 0.70" if i == needle else "street 0.50, car 0.20",
                    "tagger",
                    "{}",
                )  # fmt: skip
                for i in range(n)
            ],
        )
    q = "is there a red umbrella ?"
    base = ["ask", vid, q, "--store", str(store), "--max-new-tokens", "2", "--json"]
    wide = json.loads(invoke(env, *base).stdout)
    assert wide["k"] is None and wide["kept_slots"] is None and wide["slots"] == n
    small = [*base, "--max-context", str(wide["prompt_tokens"] + 1)]  # one slot too many
    relevant = json.loads(invoke(env, *small).stdout)
    uniform = json.loads(invoke(env, *small, "--context", "uniform").stdout)
    assert relevant["k"] == uniform["k"] == n - 1
    assert relevant["kept_slots"] == [needle] and uniform["kept_slots"] is None
    assert json.loads(relevant["settings"])["context"] == "relevant"
    assert "context" not in json.loads(uniform["settings"])
    bad = invoke(env, *small, "--context", "best")
    assert bad.exit_code == 2 and "context" in bad.stderr

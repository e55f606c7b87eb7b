"""``ask``/``qa --subtitles`` end to end through the real Typer app: an espeak-ng clip
indexed with the tiny LLaVA, transcribed by real Whisper base (written with
``store.speech.add``), answered with its transcript beside the slots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner
from videomem.jobs.cli import app
from videomem.memory.store import Store

from tests.speech import make_speech_video, transcribe_for_store
from tests.videos import make_pattern

pytestmark = pytest.mark.slow  # Whisper base on CPU


def invoke(env: dict[str, str], *args: str):  # type: ignore[no-untyped-def]
    return CliRunner(env=env).invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def said(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    env = {"VIDEOMEM_CACHE": str(tmp_path_factory.mktemp("cache"))}
    d = tmp_path_factory.mktemp("videos")
    clip = make_speech_video(d / "said.mp4")
    make_pattern(d / "quiet.mp4", 3)  # never transcribed
    store = tmp_path_factory.mktemp("s") / "store"
    r = invoke(env, "index", str(d), "--store", str(store), "--model", "tiny", "--fps", "1",
               "--device", "cpu", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    with Store(store, writer=True) as st:
        ids = {Path(rec.uri).name: rec.video_id for rec in st.list_videos()}
        st.speech.add([transcribe_for_store(clip.path, ids["said.mp4"])])
    return env, store, ids


def test_ask_and_qa_with_subtitles(said, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env, store, ids = said
    ask = ["ask", ids["said.mp4"], "what is said ?", "--store", str(store),
           "--max-new-tokens", "4", "--device", "cpu", "--json"]  # fmt: skip
    plain = json.loads(invoke(env, *ask).stdout)
    subs = json.loads(invoke(env, *ask, "--subtitles").stdout)
    assert plain["status"] == subs["status"] == "answered", subs
    # the transcript's two sentences are in the prompt (the tiny LM's words are random)
    assert subs["prompt_tokens"] > plain["prompt_tokens"] + 10
    early = json.loads(invoke(env, *ask, "--subtitles", "--at", "1.0").stdout)
    early_plain = json.loads(invoke(env, *ask, "--at", "1.0").stdout)
    assert early["status"] == "answered"  # nothing said by 1 s: no subtitles at all
    assert early["prompt_tokens"] == early_plain["prompt_tokens"]

    q = tmp_path / "q.jsonl"
    q.write_text(
        json.dumps({"video": ids["said.mp4"], "question": "what is said ?", "question_id": "a"})
        + "\n"
        + json.dumps({"video": ids["quiet.mp4"], "question": "what ?", "question_id": "b"})
        + "\n"
    )
    args = ["qa", str(q), "--store", str(store), "--max-new-tokens", "4", "--device", "cpu",
            "--json"]  # fmt: skip
    off = json.loads(invoke(env, *args).stdout)
    on = json.loads(invoke(env, *args, "--subtitles").stdout)
    assert (off["answered"], off["failed"]) == (2, 0)
    # subtitles are other answers (their own resume key); the untranscribed video fails
    assert (on["answered"], on["failed"], on["skipped"]) == (1, 1, 0)
    with Store(store) as st:
        rows = st.qa.read("answers")
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 1 and "videomem transcribe" in failed[0]["error"]
    assert json.loads(invoke(env, *args, "--subtitles").stdout)["skipped"] == 1


def test_subtitles_where_they_would_do_nothing_are_refused(said) -> None:  # type: ignore[no-untyped-def]
    """With --llm (the timeline has the transcript already) and on captions, --subtitles
    would be ignored: it stops with exit 2 and says why, before any model loads."""
    env, store, ids = said
    common = ["--store", str(store), "--subtitles"]
    r = CliRunner(env=env).invoke(app, ["ask", ids["said.mp4"], "q?", *common, "--llm", "x"])
    assert r.exit_code == 2 and "leave --subtitles out" in r.output
    r = CliRunner(env=env).invoke(app, ["caption", *common])
    assert r.exit_code == 2 and "not captions" in r.output

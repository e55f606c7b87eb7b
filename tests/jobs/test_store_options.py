"""Every command that reads or writes a store takes ``--storage-option``: one ``s3://``
store on the local S3 server, opened by each command through its flags alone (no
``AWS_*`` variable in the environment), holding a tiny-LLaVA memory (qa, ask, caption,
eval) and a tiny-CLIP one (tag, search, and QA from its tags with a text LLM)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner
from videomem.encoders.testing import tiny_checkpoint
from videomem.jobs.cli import app
from videomem.memory.store import Store

from tests.videos import make_pattern


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def s3_store(s3, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """(uri, its --storage-option flags, {file name: video id}, the videos' folder)."""
    for key in ("AWS_ENDPOINT", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_ALLOW_HTTP"):
        assert key not in os.environ, f"{key} is set: the flags must do it alone"
    cache = tmp_path_factory.mktemp("cache")
    videos = tmp_path_factory.mktemp("videos")
    uri, flags = s3.new_store_uri(), s3.cli_args()
    for name, family in [("vlm.mp4", "llava"), ("clip.mp4", "clip")]:
        one = videos / family
        one.mkdir()
        make_pattern(one / name, 3, src="smptebars" if family == "clip" else "testsrc")
        r = invoke("index", str(one), "--store", uri, *flags, "--device", "cpu", "--fps", "2",
                   "--model", str(tiny_checkpoint(family, cache)))  # fmt: skip
        assert r.exit_code == 0, r.output
    with Store(uri, storage_options=s3.options()) as st:
        ids = {Path(rec.uri).name: rec.video_id for rec in st.list_videos("indexed")}
    assert set(ids) == {"vlm.mp4", "clip.mp4"}
    return uri, flags, ids, videos


def qa_and_ask(vid: str, question_id: str, args: list[str], tmp_path: Path) -> None:
    """One question through ``qa`` (a job: its worker opens the store too) and one
    through ``ask``, each answered."""
    qfile = tmp_path / "q.jsonl"
    qfile.write_text(json.dumps({"video": vid, "question": "what ?", "question_id": question_id}))
    r = invoke("qa", str(qfile), *args, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["answered"] == 1
    r = invoke("ask", vid, "what is shown ?", *args, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["status"] == "answered"


def test_without_the_flags_the_store_is_not_reachable(s3_store) -> None:  # type: ignore[no-untyped-def]
    uri, _, ids, _ = s3_store
    r = invoke("ask", ids["vlm.mp4"], "what is shown ?", "--store", uri, "--device", "cpu")
    assert r.exit_code != 0


def test_qa_ask_caption_and_eval_on_an_object_store(s3, s3_store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    uri, flags, ids, _ = s3_store
    vid = ids["vlm.mp4"]
    common = ["--store", uri, *flags, "--device", "cpu", "--max-new-tokens", "3"]
    qa_and_ask(vid, "q1", common, tmp_path)
    r = invoke("caption", vid, *common)
    assert r.exit_code == 0, r.output

    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps([{"info": {"video_path": "vlm.mp4"}, "breakpoint": [],
                                  "global": [{"question": "what ?", "answer": "x"}]}]))  # fmt: skip
    r = invoke("eval", str(bench), *common, "--out", str(tmp_path / "eval"))
    assert r.exit_code == 0, r.output

    with Store(uri, storage_options=s3.options()) as st:
        answers = [a for a in st.qa.read("answers") if a["video_id"] == vid]
        captions = st.qa.captions(vid)
    assert "q1" in {a["question_id"] for a in answers}
    assert len(answers) == 2  # qa's question, then eval's (ask writes nothing)
    assert {c["kind"] for c in captions} >= {"global"}


def test_tag_search_and_timeline_qa_on_an_object_store(
    s3, s3_store, smollm2, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    uri, flags, ids, _ = s3_store
    vid = ids["clip.mp4"]
    r = invoke("tag", vid, "--store", uri, *flags, "--device", "cpu", "-k", "2", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["tagged"] == 1
    with Store(uri, storage_options=s3.options()) as st:
        assert {c["kind"] for c in st.qa.captions(vid)} == {"tags"}

    r = invoke("search", "colour bars", "--store", uri, *flags, "--source", "visual",
               "--refresh", "--k", "2", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    moments = json.loads(r.stdout[r.stdout.index("{") :])["moments"]
    assert moments and {m["video_id"] for m in moments} == {vid}

    # the text timeline (the tags above) read by a text LLM, in the job and in ask
    common = ["--store", uri, *flags, "--llm", "smollm2", "--device", "cpu",
              "--max-new-tokens", "3"]  # fmt: skip
    qa_and_ask(vid, "t1", common, tmp_path)

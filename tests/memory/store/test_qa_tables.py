"""The answers and captions tables of the store (real LanceDB)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import torch
from videomem.memory.config import MemoryConfig
from videomem.memory.store import ANSWERS_SCHEMA, CAPTIONS_SCHEMA, Store, VideoCommit, VideoRecord
from videomem.memory.types import VideoMemory
from videomem.pipeline.errors import StoreError


def _answer(qid: str, status: str = "answered", answer: str = "a", **kw) -> dict:
    row = dict(
        question_id=qid,
        video_id="v1",
        mode="global",
        question="q?",
        answer=answer,
        model="m",
        settings_hash="s1",
        status=status,
    )
    row.update(kw)
    return row


def test_answers_upsert_on_their_key_and_resume_skips_answered(tmp_path: Path) -> None:
    with Store(tmp_path / "s", writer=True) as st:
        assert st.qa.read("answers") == [] and st.qa.answered("m", "s1") == set()
        st.qa.add("answers", [_answer("q1"), _answer("q2", "failed", "", error="bad")])
        st.qa.add("answers", [_answer("q1", answer="b")])  # re-answered: replaced
        st.qa.add("answers", [_answer("q1", settings_hash="s2")])  # other settings: new
        rows = st.qa.read("answers")
        assert len(rows) == 3
        assert {r["answer"] for r in rows if r["settings_hash"] == "s1"} == {"b", ""}
        assert st.qa.answered("m", "s1") == {("q1", "v1")}  # the failed one is retried
        assert st.qa.answered("other-model", "s1") == set()
        assert set(ANSWERS_SCHEMA.names) <= set(rows[0])
    with pytest.raises(StoreError, match="read-only"), Store(tmp_path / "s") as ro:
        ro.qa.add("answers", [_answer("q3")])


def test_captions_are_read_for_the_current_memory_only(tmp_path: Path) -> None:
    mem = VideoMemory(
        video_id="v1",
        tokens=torch.zeros(2, 3, 4, dtype=torch.float16),
        sizes=torch.ones(2, dtype=torch.int64),
        start_s=torch.tensor([0.0, 1.0], dtype=torch.float64),
        end_s=torch.tensor([1.0, 2.0], dtype=torch.float64),
        embedding=None,
        encoder_fingerprint="fp",
        memory_config=MemoryConfig(),
        frames_seen=2,
    )
    rec = VideoRecord("v1", "fp", "cfg", "indexed", "/x.mp4", model="m")
    with Store(tmp_path / "s", writer=True) as st:
        (old,) = st.commit([VideoCommit(rec, mem)])

        def cap(run_id: str, kind: str, start: float, text: str) -> dict:
            return dict(
                video_id="v1",
                encoder_fingerprint="fp",
                config_hash="cfg",
                run_id=run_id,
                kind=kind,
                start_s=start,
                end_s=start + 1,
                text=text,
                model="m",
                settings="{}",
            )

        st.qa.add(
            "captions",
            [
                cap(old.run_id, "dense", 1.0, "d1"),
                cap(old.run_id, "global", 0.0, "g"),
                cap(old.run_id, "dense", 0.0, "d0"),
            ],
        )
        assert [c["text"] for c in st.qa.captions("v1")] == ["g", "d0", "d1"]
        assert set(CAPTIONS_SCHEMA.names) <= set(st.qa.captions("v1")[0])
        (new,) = st.commit([VideoCommit(rec, mem)])  # re-indexed: a new memory
        assert new.run_id != old.run_id
        assert st.qa.captions("v1") == []  # captions of the replaced memory are not shown


def test_an_answers_table_from_before_kept_slots_still_reads_and_grows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table written by a version without ``kept_slots`` (its schema without the
    column): a reader sees its rows without it, and the next write adds the column
    (null for the old rows) instead of failing on the new rows."""
    from videomem.memory.store import qa_tables

    old = pa.schema([f for f in ANSWERS_SCHEMA if f.name != "kept_slots"])
    with monkeypatch.context() as m:
        m.setitem(qa_tables.SCHEMAS, "answers", old)
        with Store(tmp_path / "s", writer=True) as st:
            st.qa.add("answers", [_answer("q1")])
    with Store(tmp_path / "s") as ro:
        (row,) = ro.qa.read("answers")
        assert row["question_id"] == "q1" and row.get("kept_slots") is None
    with Store(tmp_path / "s", writer=True) as st:
        st.qa.add("answers", [_answer("q2", kept_slots=[3, 9])])
        rows = {r["question_id"]: r["kept_slots"] for r in st.qa.read("answers")}
    assert rows == {"q1": None, "q2": [3, 9]}


def test_an_answers_table_missing_other_columns_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from videomem.memory.store import qa_tables

    odd = pa.schema([f for f in ANSWERS_SCHEMA if f.name not in ("kept_slots", "dtype")])
    with monkeypatch.context() as m:
        m.setitem(qa_tables.SCHEMAS, "answers", odd)
        with Store(tmp_path / "s", writer=True) as st:
            st.qa.add("answers", [_answer("q1")])
    with Store(tmp_path / "s", writer=True) as st, pytest.raises(StoreError, match="dtype"):
        st.qa.add("answers", [_answer("q2")])

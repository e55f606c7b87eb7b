"""Evaluation: judge replies of every malformed shape are unparsable (never guessed),
match scores, the MovieChat-1K format, and the shipped bench run end to end with
SmolLM2 answering from the real tag timeline and judging."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner
from videomem.qa.eval import (
    BenchError,
    BenchItem,
    Scored,
    Verdict,
    bench_items,
    chosen_option,
    match_scores,
    parse_judge,
    question_text,
    summarise,
    summary_table,
)

from tests.paths import REPO

BENCH = REPO / "bench" / "sample_clips_qa.json"


@pytest.mark.parametrize(
    ("reply", "pred", "score"),
    [
        ("{'pred': 'yes', 'score': 4}", "yes", 4.0),
        ('{"pred": "no", "score": 1.5}', "no", 1.5),
        ("```python\n{'pred': 'Yes', 'score': 5}\n```", "yes", 5.0),
        ("Here is my evaluation: {'pred': 'no', 'score': '2'}", "no", 2.0),
        ("{'PRED': ' yes ', 'Score': 0}", "yes", 0.0),
    ],
)
def test_well_formed_judge_replies(reply: str, pred: str, score: float) -> None:
    assert parse_judge(reply) == Verdict(pred, score)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "   \n",
        "yes",
        "pred: yes, score: 4",
        "The answer is correct, I would give it a 4.",
        "{'pred': 'yes'}",
        "{'score': 4}",
        "{}",
        "{'pred': 'maybe', 'score': 3}",
        "{'pred': 'correct', 'score': 5}",
        "{'pred': 1, 'score': 5}",
        "{'pred': 'yes', 'score': 7}",
        "{'pred': 'yes', 'score': -1}",
        "{'pred': 'yes', 'score': 'high'}",
        "{'pred': 'yes', 'score': '4/5'}",
        "{'pred': 'yes', 'score': True}",
        "{'pred': 'yes', 'score': None}",
        "{'pred': 'yes', 'score': [4]}",
        "{'pred': 'yes', 'score': 1e999}",
        "{'pred': 'yes', 'score': float('nan')}",
        "{'pred': 'yes', 'score': 4} {'pred': 'no', 'score': 1}",
        "{'pred': 'yes', 'score': 4}, or maybe {'pred': 'yes', 'score': 3}",
        "{'pred': 'yes', 'score'",
        "'pred': 'yes', 'score': 4}",
        "{'pred': {'answer': 'yes'}, 'score': 3}",
        "{pred: yes, score: 4}",
        "{'pred': 'yes' 'score': 4}",
        "['yes', 4]",
        "{'yes', 4}",
        "{'pred': 'yes', 'score': __import__('os').getpid()}",
    ],
)
def test_malformed_judge_replies_are_unparsable(reply: str) -> None:
    v = parse_judge(reply)
    assert v.pred is None and v.score is None and not v.parsed
    assert v.error  # the reason is recorded


def item(qtype: str = "open", reference: str = "a taxi cab", **kw: object) -> BenchItem:
    return BenchItem("v.mp4", "global", "Q?", reference, qtype=qtype, **kw)  # type: ignore[arg-type]


def test_match_scores() -> None:
    assert match_scores(item(), "A taxi cab.") == {"exact": True, "contains": True}
    assert match_scores(item(), "I see a taxi cab on the road") == {
        "exact": False,
        "contains": True,
    }
    assert match_scores(item(), "a taxicab")["contains"] is False  # whole words only
    yn = item("yes/no", "yes")
    assert match_scores(yn, "Yes, there is a bicycle.")["contains"] is True
    assert match_scores(yn, "No.")["contains"] is False
    assert match_scores(yn, "The timeline shows a unicycle.")["contains"] is False
    mc = item("choice", "A", choices=("a bicycle", "a piano", "a horse"))
    assert chosen_option("(A)", mc.choices) == 0 and chosen_option("B) a piano", mc.choices) == 1
    assert match_scores(mc, "A")["exact"] and match_scores(mc, "The answer is a bicycle.")["exact"]
    assert not match_scores(mc, "a bicycle or a horse")["exact"]  # names two: no guess
    assert not match_scores(mc, "C")["exact"]
    assert chosen_option("A horse.", mc.choices) == 2  # an article, not option A
    assert chosen_option("The answer is C.", mc.choices) == 2
    assert chosen_option("(A) or (B)", mc.choices) is None
    assert "(A) a bicycle (B) a piano" in question_text(mc)


def test_moviechat_format(tmp_path: Path) -> None:
    entry = {
        "info": {"video_path": "1.mp4", "fps": 24},
        "global": [{"question": "Who?", "answer": "A man."}],
        "breakpoint": [{"question": "Now?", "answer": "Rain.", "time": 240}],
    }
    items = bench_items([entry])
    assert [(i.mode, i.time_s, i.video) for i in items] == [
        ("global", None, "1.mp4"),
        ("breakpoint", 10.0, "1.mp4"),
    ]
    assert len({i.question_id for i in items}) == 2
    assert bench_items([entry])[1].question_id == items[1].question_id  # stable
    with pytest.raises(BenchError, match="time"):
        bench_items([{"info": {"video_path": "x"}, "breakpoint": [{"question": "q", "time": 3}]}])
    with pytest.raises(BenchError, match="no video"):
        bench_items([{"global": []}])
    with pytest.raises(BenchError, match="type"):
        bench_items([{"video": "x", "global": [{"question": "q", "type": "essay"}]}])
    shipped = bench_items(json.loads(BENCH.read_text()))
    assert {i.mode for i in shipped} == {"global", "breakpoint"} and len(shipped) >= 10


def test_summary_counts_unparsable_apart() -> None:
    a = Scored(item(), "x", exact=True, contains=True, judge_reply="{'pred':'yes','score':5}")
    a.judge = parse_judge(a.judge_reply or "")
    b = Scored(item(), "y", judge_reply="great answer")
    b.judge = parse_judge(b.judge_reply or "")
    c = Scored(item(), status="failed", error="boom")
    s = summarise([a, b, c], judged=True)["all"]
    assert s["questions"] == 3 and s["answered"] == 2 and s["exact"] == pytest.approx(1 / 3)
    assert s["judged"] == 1 and s["unparsable"] == 1
    assert s["judge_accuracy"] == 1.0 and s["judge_score"] == 5.0
    assert "judge_score" in summary_table({"all": s})


@pytest.mark.slow  # SmolLM2-135M answering and judging on CPU, ~25 s
def test_eval_of_the_sample_clips_with_smollm2(
    smollm2: Path, tagged_store: Path, tmp_path: Path
) -> None:
    """`videomem eval` on part of the shipped bench (one global and one breakpoint
    question per clip, to keep the suite fast): SmolLM2 answers from the real tags and
    judges; every question gets an answer row and a score row, the summary has both
    modes, and figures are whatever the model gives (printed, not asserted)."""
    from videomem.jobs.cli import app

    part = [
        {**e, "global": e["global"][:1], "breakpoint": e["breakpoint"][:1]}
        for e in json.loads(BENCH.read_text())
    ]
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps(part))
    out = tmp_path / "eval"
    r = CliRunner().invoke(
        app,
        ["eval", str(bench), "--store", str(tagged_store), "--llm", "smollm2",
         "--judge", "smollm2", "--out", str(out), "--max-new-tokens", "16"],
        catch_exceptions=False,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    print("\n" + r.output)
    n = len(bench_items(part))
    assert n == 6
    scores = [json.loads(x) for x in (out / "scores.jsonl").read_text().splitlines()]
    assert len(scores) == n and all(s["status"] == "answered" for s in scores)
    for s in scores:  # each verdict is parsed or carries its reason, never both
        assert s["judge_reply"] is not None
        assert (s["judge_score"] is None) == (s["judge_error"] is not None)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["summary"]) == {"global", "breakpoint", "all"}
    assert summary["summary"]["all"]["questions"] == n
    assert summary["source"] == "timeline" and summary["judge"] == "smollm2"
    assert "judge_accuracy" in r.output

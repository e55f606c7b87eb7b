"""Benchmark of the store at scale: how each operation grows from a small to a large store.

    python bench/store.py           # quick: 1K and 10K videos (~2 min on 2 CPU cores)
    python bench/store.py --full    # 10K and 100K videos (~15 min; ~1 GB of disk)

Builds two synthetic stores (every video: 8 slots + 2 recent frames of [4, 32] float16
tokens and a 16-d embedding, committed 1000 videos per commit, then compacted and
indexed as an index job leaves a store), then runs each operation in a fresh child
process and prints its time (median of 3 after a warm-up) and its peak-RSS growth over
the opened store (VmHWM), for both sizes, and the ratio large/small:

* ``ls page``      — ``list_videos(limit=100)``: the first page of ``videomem ls``
* ``ls all``       — ``list_videos()``: every row, what ``ls`` read before paging
* ``ls counts``    — ``count_videos`` per status: the footer of ``videomem ls``
* ``load_memory``  — one video's memory
* ``commit 64``    — one commit of 64 new videos (three LanceDB commits)
* ``job start clean`` — what an index job does before its first video, after the
                     last writer closed cleanly: open the store as the writer, skip
                     the garbage collection (the clean-close marker), read its key's rows
* ``job start crash`` — the same after a writer was SIGKILLed (a child process, before
                     each run): the full ``collect_garbage`` over every memory row
* ``export``       — the full-table scan: both tables to Parquet

A flat ratio (about 1) means the operation does not grow with the store; about 10 means
it is linear in it. Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SLOTS, RECENT, N, D, E = 8, 2, 4, 32, 16
FP, CFG = "bench:enc:float16", "benchcfg"
OPS = [
    "ls page",
    "ls all",
    "ls counts",
    "load_memory",
    "commit 64",
    "job start clean",
    "job start crash",
    "export",
]
#: job start after a clean close (False) or after a killed writer (True)
JOB_START = {"job start clean": False, "job start crash": True}


def vm_hwm_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("VmHWM not found")


def video_id(i: int) -> str:
    return f"{i:012x}"


def commits(start: int, count: int, seed: int = 0):
    """VideoCommits of synthetic videos ``start .. start+count-1``."""
    import json as _json

    import torch
    from videomem.memory.config import MemoryConfig
    from videomem.memory.store import VideoCommit, VideoRecord
    from videomem.memory.types import VideoMemory

    cfg = _json.dumps({"memory": MemoryConfig().to_dict()})
    g = torch.Generator().manual_seed(seed + start)
    sizes = torch.full((SLOTS,), 4, dtype=torch.int64)
    ends = torch.cumsum(sizes.double(), 0)
    out = []
    for i in range(start, start + count):
        vid = video_id(i)
        mem = VideoMemory(
            video_id=vid,
            tokens=torch.randn(SLOTS, N, D, generator=g).half(),
            sizes=sizes,
            start_s=ends - sizes.double(),
            end_s=ends,
            embedding=torch.randn(SLOTS, E, generator=g),
            encoder_fingerprint=FP,
            memory_config=MemoryConfig(),
            frames_seen=int(sizes.sum()),
            recent_tokens=torch.randn(RECENT, N, D, generator=g).half(),
            recent_timestamps=torch.arange(RECENT, dtype=torch.float64),
        )
        rec = VideoRecord(
            video_id=vid, encoder_fingerprint=FP, config_hash=CFG, status="indexed",
            uri=f"/corpus/{i % 997:03d}/{vid}.mp4", config_json=cfg, frames_sampled=32,
            model="bench", duration_s=32.0, tokens_per_frame=N, dim=D, embed_dim=E,
        )  # fmt: skip
        out.append(VideoCommit(rec, mem))
    return out


def build(path: str, videos: int) -> dict[str, float]:
    from videomem.memory.store import Store

    t0 = time.perf_counter()
    with Store(path, writer=True) as store:
        for start in range(0, videos, 1000):
            store.commit(commits(start, min(1000, videos - start)))
        t1 = time.perf_counter()
        store.optimize()
    return {"commit_s": t1 - t0, "optimize_s": time.perf_counter() - t1}


def kill_a_writer(path: str) -> None:
    """Leave the store as a killed index job does: a child opens it as the writer and
    is SIGKILLed (no clean close)."""
    code = (
        "import os, signal\n"
        "from videomem.memory.store import Store\n"
        f"Store({path!r}, writer=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False)
    if done.returncode != -9:
        raise RuntimeError(f"the writer was not killed: {done.stderr.decode()[-2000:]}")


def job_start(path: str, after_crash: bool) -> tuple[float, float]:
    """Seconds from opening the store as the writer to reading its key's rows (every
    row here: all synthetic videos share one key), and of that the garbage collection."""
    from videomem.memory.store import Store

    if after_crash:
        kill_a_writer(path)  # before the clock starts
    t = time.perf_counter()
    store = Store(path, writer=True)
    t_gc = time.perf_counter()
    store.collect_garbage_after_crash()
    gc_s = time.perf_counter() - t_gc
    store.list_videos(encoder_fingerprint=FP, config_hash=CFG)
    took = time.perf_counter() - t
    store.close()  # a clean close: writes the marker (not part of the start)
    return took, gc_s


def run_op(op: str, path: str, videos: int) -> dict[str, float]:
    """One operation, in this (fresh) process: median time of 3 after a warm-up, and
    peak-RSS growth over the opened store (job start: over the imported libraries,
    since opening the store is part of it)."""
    from videomem.memory.store import Store

    if op in JOB_START:
        Store(path).close()  # libraries loaded before the baseline, as for the other ops
        base = vm_hwm_kb()
        runs = [job_start(path, JOB_START[op]) for _ in range(4)]  # a warm-up, then 3
        peak = vm_hwm_kb()
        return {"s": statistics.median(r[0] for r in runs[1:]),
                "gc_s": statistics.median(r[1] for r in runs[1:]),
                "rss_mb": (peak - base) / 1024, "base_mb": base / 1024}  # fmt: skip
    store = Store(path, writer=op == "commit 64")
    out_dir = tempfile.mkdtemp(prefix="vm-export-")
    next_id = [videos + 1_000_000]

    def once() -> None:
        if op == "ls page":
            store.list_videos(limit=100)
        elif op == "ls all":
            store.list_videos()
        elif op == "ls counts":
            store.count_videos("indexed")
            store.count_videos("failed")
        elif op == "load_memory":
            store.load_memory(video_id(videos // 2))
        elif op == "commit 64":
            batch = commits(next_id[0], 64)  # made before the clock starts
            next_id[0] += 64
            t = time.perf_counter()
            store.commit(batch)
            times.append(time.perf_counter() - t)
            return
        elif op == "export":
            store.export(out_dir)
        else:
            raise ValueError(op)

    times: list[float] = []
    base = vm_hwm_kb()
    once()  # warm-up (first reads open the tables' files)
    times.clear()
    for _ in range(3):
        t = time.perf_counter()
        n = len(times)
        once()
        if len(times) == n:
            times.append(time.perf_counter() - t)
    peak = vm_hwm_kb()
    store.close()
    shutil.rmtree(out_dir, ignore_errors=True)
    return {"s": statistics.median(times), "rss_mb": (peak - base) / 1024, "base_mb": base / 1024}


def child(*args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"{args}: {out.stderr[-2000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--full", action="store_true", help="10K and 100K videos")
    ap.add_argument("--quick", action="store_true", help="the default: 1K and 10K videos")
    ap.add_argument("--dir", help="where to build the stores (default: a temp dir)")
    ap.add_argument("--build-child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--op-child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.build_child:
        print(json.dumps(build(args.build_child[0], int(args.build_child[1]))))
        return
    if args.op_child:
        op, path, videos = args.op_child
        print(json.dumps(run_op(op, path, int(videos))))
        return

    sizes = (10_000, 100_000) if args.full else (1_000, 10_000)
    root = Path(args.dir or tempfile.mkdtemp(prefix="vm-bench-store-"))
    results: dict[int, dict[str, dict[str, float]]] = {}
    for n in sizes:
        path = str(root / f"store-{n}")
        b = child("--build-child", path, str(n))
        rows = n * (SLOTS + RECENT)
        print(
            f"built {n:>7} videos ({rows} memory rows): commits {b['commit_s']:.1f}s, "
            f"optimize {b['optimize_s']:.1f}s, {_du(path) / 2**20:.0f} MiB",
            flush=True,
        )
        results[n] = {op: child("--op-child", op, path, str(n)) for op in OPS}
    small, large = sizes
    print(f"\n{'operation':16} {'time ' + _k(small):>12} {'time ' + _k(large):>12} {'ratio':>6}"
          f"   {'ΔRSS ' + _k(small):>11} {'ΔRSS ' + _k(large):>11} {'ratio':>6}")  # fmt: skip
    for op in OPS:
        a, b = results[small][op], results[large][op]
        print(
            f"{op:16} {_ms(a['s']):>12} {_ms(b['s']):>12} {b['s'] / a['s']:>6.1f}"
            f"   {a['rss_mb']:>9.1f}MB {b['rss_mb']:>9.1f}MB "
            f"{_ratio(b['rss_mb'], a['rss_mb']):>6}"
        )
    print()
    for n in sizes:
        clean, crash = results[n]["job start clean"], results[n]["job start crash"]
        print(
            f"job start at {_k(n)}: after a clean close {_ms(clean['s'])} (garbage "
            f"collection skipped, {_ms(clean['gc_s'])}), ΔRSS {clean['rss_mb']:.0f} MB; after a "
            f"crash {_ms(crash['s'])} (full collection {_ms(crash['gc_s'])}), ΔRSS "
            f"{crash['rss_mb']:.0f} MB; crash/clean {crash['s'] / clean['s']:.1f}x the time"
        )
    page, full = results[large]["ls page"], results[large]["ls all"]
    print(
        f"\nls first page vs every row at {_k(large)}: {full['s'] / page['s']:.0f}x faster, "
        f"{full['rss_mb']:.0f} MB vs {page['rss_mb']:.1f} MB of RSS growth"
    )
    if args.dir:
        print(f"stores kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


def _du(path: str) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def _k(n: int) -> str:
    return f"{n // 1000}K"


def _ms(s: float) -> str:
    return f"{s * 1000:.1f} ms" if s < 10 else f"{s:.1f} s"


def _ratio(b: float, a: float) -> str:
    return f"{b / a:.1f}" if a > 0.5 else "-"  # below 0.5 MB the growth is noise


if __name__ == "__main__":
    main()

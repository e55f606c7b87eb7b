"""Benchmark of the memory methods: what they keep, what they store, what they cost.

    python bench/memory.py            # ~3-5 min on 2 CPU cores
    python bench/memory.py --quick    # one seed, fewer frames (~2 min)

Prints, all measured in this run on this machine:

1. Pareto tables of scene recall and slot purity (``memory.quality``) against stored
   slots and stored KB per minute of video, for ``adaptive`` (several thresholds, and
   budget-only at several budgets), the ``moviechat``, ``moviechat_reference`` and
   ``mbc`` presets at the same budgets, and uniform sampling (every k-th frame):
   (a) synthetic video: 12 scenes of 1 to 2000 frames at 1 fps (known cuts), mean of
       seeds; bytes for MovieChat's [32, 768] float16 tokens per slot;
   (b) the three real sample clips (../shared/testdata) joined, sampled at --fps and
       encoded with the real ImageNet MobileNetV2 ([49, 1280] tokens, 1280-d
       embedding); the cuts are where one clip's frames end.
   Stored bytes count slot tokens (float16), embeddings (float32), sizes and spans,
   and the raw recent frames a config keeps (``keep_recent``), on the rows the store
   would write. (b) also prints the default memory's stored KB per minute and error
   with int8 tokens (per-token and per-slot scales) against float16.
   ``*`` marks rows on the Pareto front (no other row has fewer or equal slots and
   at least the same recall and purity, one of them strictly better).
   (c) the issue's static camera (synthetic): slots and whether short events in a few
       positions keep a slot of their own, default before/after and ``moviechat``;
   (d) slots and stored KB per minute, before/after, of a fixed-camera clip made
       with ffmpeg (a figure crosses it for 6 s) and of each sample clip.
2. Consolidation time per frame as a % of one encoder forward per frame (the real
   MobileNetV2 on this CPU, [49, 1280] tokens). Target < 2%.
3. Peak-RSS growth per frame between 1K and 10K frames of [32, 768] tokens, each
   config in a fresh subprocess (VmHWM). Target: flat (< 1 KB/frame).

Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from videomem.memory.builder import MemoryBuilder
from videomem.memory.config import MemoryConfig
from videomem.memory.quality import (
    event_kept,
    scene_recall,
    slot_purity,
    static_scene,
    synthetic_scenes,
    uniform_spans,
)
from videomem.memory.store import schema
from videomem.memory.store.schema import memory_rows
from videomem.memory.types import VideoMemory
from videomem.pipeline.types import FrameTokens

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CLIPS = ("bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4")
#: 12 scenes from 1 to 2000 frames (5291 s at 1 fps)
UNEVEN = [2000, 1, 300, 40, 1200, 5, 80, 600, 12, 150, 3, 900]
BATCH = 32


def preset(name: str, **kw: object) -> MemoryConfig:
    return dataclasses.replace(MemoryConfig.preset(name), **kw)  # type: ignore[arg-type]


#: configs of sections 2 and 3 (worst case for adaptive: threshold None, always at budget)
CONFIGS: dict[str, MemoryConfig] = {
    "adaptive (default)": MemoryConfig(),
    "adaptive before (cos)": MemoryConfig(metric="cosine", max_span_s=None),
    "adaptive thr=None": MemoryConfig(threshold=None),
    "adaptive keep_events": MemoryConfig(keep_events=True),
    "moviechat": MemoryConfig.preset("moviechat"),
    "moviechat_reference": MemoryConfig.preset("moviechat_reference"),
    "mbc": MemoryConfig.preset("mbc"),
}


# --------------------------------------------------------------------------- quality


def build(cfg: MemoryConfig, x: torch.Tensor, ts: torch.Tensor, emb: torch.Tensor | None):
    b = MemoryBuilder(cfg)
    for i in range(0, x.shape[0], BATCH):
        b.add(
            FrameTokens(
                x[i : i + BATCH], ts[i : i + BATCH], None if emb is None else emb[i : i + BATCH]
            )
        )
    return b.finish("bench", "none")


@functools.cache
def stored_bytes(slots: int, recent: int, n: int, d: int, e: int) -> int:
    """Bytes the store takes for a memory of this shape (float16 tokens), counted on
    the rows it would write (``memory.store.schema.stored_bytes``)."""
    zeros = torch.zeros(slots, dtype=torch.float64)
    mem = VideoMemory(
        video_id="bench",
        tokens=torch.zeros(slots, n, d, dtype=torch.float16),
        sizes=torch.ones(slots, dtype=torch.int64),
        start_s=zeros,
        end_s=zeros,
        embedding=torch.zeros(slots, e) if e else None,
        encoder_fingerprint="none",
        memory_config=MemoryConfig(),
        frames_seen=slots,
        recent_tokens=torch.zeros(recent, n, d, dtype=torch.float16) if recent else None,
        recent_timestamps=torch.zeros(recent, dtype=torch.float64) if recent else None,
    )
    return schema.stored_bytes(memory_rows(mem, ("bench", "none", "none"), "bench"))


def token_storage_table(mem: VideoMemory, minutes: float) -> None:
    """Stored KB per minute and the error of each token encoding, on ``mem``'s rows as
    the store writes them (tokens handed over as float16, as the index job does)."""
    mem = dataclasses.replace(mem, tokens=mem.tokens.half())
    print("   token storage of the default memory (error against its float16 tokens):")
    print(f"   {'encoding':<18}{'KB/min':>10}{'x float16':>11}{'rel RMSE':>10}{'min cos':>9}")
    base = None
    for dtype, scale in (("float16", "token"), ("int8", "token"), ("int8", "slot")):
        cfg = dataclasses.replace(mem.memory_config, token_dtype=dtype, token_scale=scale)
        m = dataclasses.replace(mem, memory_config=cfg)
        info = schema.storage_fields(m, memory_rows(m, ("bench", "none", "none"), "bench"))
        base = base or info["stored_bytes"]
        name = dtype if dtype == "float16" else f"{dtype}/{scale}"
        rel = info.get("token_rel_rmse") or 0.0
        cos = info.get("token_min_cosine") or 1.0
        print(
            f"   {name:<18}{info['stored_bytes'] / 1024 / minutes:>10.1f}"
            f"{info['stored_bytes'] / base:>11.3f}{rel:>10.2%}{cos:>9.4f}"
        )


def grid(thresholds: list[float | None], budgets: list[int]) -> dict[str, MemoryConfig]:
    rows = {f"adaptive thr={t}": MemoryConfig(threshold=t) for t in thresholds}
    for L in budgets:
        rows[f"adaptive thr=None L={L}"] = MemoryConfig(threshold=None, long_term_len=L)
        rows[f"adaptive thr={MemoryConfig().threshold} L={L}"] = MemoryConfig(long_term_len=L)
        rows[f"adaptive keep_events L={L}"] = MemoryConfig(long_term_len=L, keep_events=True)
        for name in ("moviechat", "moviechat_reference", "mbc"):
            rows[f"{name} L={L}"] = preset(name, long_term_len=L)
    return rows


def pareto_table(
    title: str,
    videos: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]],
    configs: dict[str, MemoryConfig],
    budgets: list[int],
    shape: tuple[int, int, int],
) -> None:
    """videos: (tokens [T, N, D], timestamps [T], embedding [T, E] or None, cuts [K+1])."""
    n, d, e = shape
    scores: dict[str, list[tuple[float, float, float, float]]] = {}
    for x, ts, emb, bounds in videos:
        minutes = float(bounds[-1] - bounds[0]) / 60
        step = float(ts[1] - ts[0])
        for name, cfg in configs.items():
            m = build(cfg, x, ts, emb)
            recent = 0 if m.recent_tokens is None else int(m.recent_tokens.shape[0])
            kb = stored_bytes(len(m), recent, n, d, e) / 1024 / minutes
            scores.setdefault(name, []).append(
                (
                    len(m),
                    scene_recall(m.start_s, m.end_s, bounds),
                    slot_purity(m.start_s, m.end_s, bounds),
                    kb,
                )
            )
        for k in budgets:
            s, en = uniform_spans(ts / step, k)
            s, en = s * step, en * step
            kb = stored_bytes(int(s.numel()), 0, n, d, e) / 1024 / minutes
            scores.setdefault(f"uniform K={k}", []).append(
                (int(s.numel()), scene_recall(s, en, bounds), slot_purity(s, en, bounds), kb)
            )
    mean = {k: tuple(sum(c) / len(v) for c in zip(*v, strict=True)) for k, v in scores.items()}

    def dominated(a: tuple[float, ...]) -> bool:
        return any(
            b[0] <= a[0] and b[1] >= a[1] and b[2] >= a[2] and b[:3] != a[:3] for b in mean.values()
        )

    print(f"\n{title}")
    print(f"   {'method':<32}{'slots':>8}{'recall':>8}{'purity':>8}{'KB/min':>10}")
    for name, v in sorted(mean.items(), key=lambda kv: (kv[1][0], -kv[1][1], -kv[1][2])):
        mark = " " if dominated(v) else "*"
        print(f" {mark} {name:<32}{v[0]:>8.1f}{v[1]:>8.3f}{v[2]:>8.3f}{v[3]:>10.1f}")


def synthetic_section(seeds: int) -> None:
    videos = []
    for seed in range(seeds):
        x, ts, bounds = synthetic_scenes(UNEVEN, n=32, d=64, noise=0.7, seed=seed)
        videos.append((x, ts, None, bounds))
    budgets = [12, 32, 64, 256]
    configs = grid([None, 0.5, 0.6, 0.7, 0.85, 0.95], budgets)
    pareto_table(
        f"1a. synthetic: {len(UNEVEN)} scenes of {UNEVEN} frames at 1 fps "
        f"({sum(UNEVEN)} frames), mean of {seeds} seed(s); bytes for [32, 768] tokens",
        videos,
        configs,
        budgets,
        (32, 768, 0),
    )


def real_tokens(fps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """The three clips' frames at ``fps``, encoded by the real MobileNetV2 and joined
    into one stream (one sample every 1/fps s); cuts where each clip's frames end.
    Returns tokens, timestamps, embedding, cuts and encode seconds per frame."""
    from videomem.encoders import load_encoder
    from videomem.pipeline.decode import decode
    from videomem.pipeline.types import DecodeConfig

    enc = load_encoder(SHARED / "models" / "mobilenet_v2_imagenet", device="cpu")
    cfg = DecodeConfig(fps=fps, size=enc.input_size)
    xs, es, counts = [], [], []
    spent = 0.0
    for clip in CLIPS:
        n = 0
        for batch in decode(SHARED / "testdata" / clip, cfg):
            t0 = time.perf_counter()
            ft = enc.encode(batch.frames, batch.timestamps)
            spent += time.perf_counter() - t0
            xs.append(ft.tokens)
            es.append(ft.embedding)
            n += len(batch)
        counts.append(n)
    x, emb = torch.cat(xs), torch.cat(es)
    ts = torch.arange(x.shape[0], dtype=torch.float64) / fps
    bounds = torch.tensor([0, *torch.tensor(counts).cumsum(0).tolist()], dtype=torch.float64) / fps
    return x, ts, emb, bounds, spent / x.shape[0]


def real_section(fps: float) -> float | None:
    if (
        not (SHARED / "testdata").is_dir()
        or not (SHARED / "models" / "mobilenet_v2_imagenet").is_dir()
    ):
        print(f"\n1b. skipped: no {SHARED}/testdata or models/mobilenet_v2_imagenet")
        return None
    x, ts, emb, bounds, enc = real_tokens(fps)
    budgets = [3, 6, 12, 24]
    configs = grid([None, 0.7, 0.8, 0.85, 0.9, 0.95], budgets)
    pareto_table(
        f"1b. real: {', '.join(CLIPS)} joined at {fps:g} fps ({x.shape[0]} frames, cuts at "
        f"{bounds[1:-1].tolist()} s), real MobileNetV2 [49, 1280] + 1280-d embedding",
        [(x, ts, emb, bounds)],
        configs,
        budgets,
        (49, 1280, 1280),
    )
    minutes = float(bounds[-1] - bounds[0]) / 60
    token_storage_table(build(MemoryConfig(), x, ts, emb), minutes)
    return enc


# --------------------------------------------------------------------------- static camera

#: the adaptive default before the per-position criterion and the span limit
BEFORE = MemoryConfig(metric="cosine", max_span_s=None)
#: the issue's static scene: a 10-frame event in 5 of 49 positions, a 3-frame one in 4
ISSUE_EVENTS = [(200, 10, 5), (400, 3, 4)]


def static_table() -> None:
    """The issue's table: 10 minutes of a fixed camera (49 tokens x 64, noise 0.15)."""
    x, ts = static_scene(600, ISSUE_EVENTS)
    print("\n1c. static camera, synthetic: 600 frames at 1 fps, events of 10 frames (5 of 49")
    print("    positions) and 3 frames (4 positions); kept = a slot holding only event frames")
    print(f"   {'memory':<34}{'L':>5}{'slots':>7}{'10-frame kept':>15}{'3-frame kept':>14}")
    configs = {
        "adaptive before (cosine, no span)": BEFORE,
        "adaptive (default)": MemoryConfig(),
        "moviechat preset": MemoryConfig.preset("moviechat"),
    }
    for name, cfg in configs.items():
        for budget in (256, 64, 32):
            m = build(dataclasses.replace(cfg, long_term_len=budget), x, ts, None)
            kept = [
                "yes" if event_kept(m.start_s, m.end_s, a, a + n) else "no"
                for a, n, _ in ISSUE_EVENTS
            ]
            print(f"   {name:<34}{budget:>5}{len(m):>7}{kept[0]:>15}{kept[1]:>14}")


def static_clip(out: Path, still_from: Path, duration: float = 80.0) -> Path:
    """An ffmpeg fixed camera: one frame of ``still_from`` held ``duration`` s with sensor
    noise, a 40x90 px figure crossing it during [30, 36) s (as tests/videos.py's
    make_static_camera, which the bench cannot import)."""
    import subprocess as sp

    from videomem.pipeline.ffmpeg import find_ffmpeg

    graph = (
        "[0:v]trim=end_frame=1,loop=loop=-1:size=1,setpts=N/(10*TB),scale=320:240,setsar=1,"
        "noise=alls=4:allf=t[bg];color=c=0xC03020:s=40x90:r=10[fig];"
        "[bg][fig]overlay=x='46.667*(t-30)':y=100:enable='gte(t,30)*lt(t,36)'[v]"
    )
    sp.run(
        [find_ffmpeg(), "-v", "error", "-y", "-ss", "3", "-i", str(still_from),
         "-filter_complex", graph, "-map", "[v]", "-t", str(duration), "-r", "10",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(out)],
        check=True,
    )  # fmt: skip
    return out


def footage_table(fps: float) -> None:
    """Slots and stored KB per minute, before and after, per clip (real MobileNetV2)."""
    import tempfile

    from videomem.encoders import load_encoder
    from videomem.pipeline.decode import decode
    from videomem.pipeline.types import DecodeConfig

    enc = load_encoder(SHARED / "models" / "mobilenet_v2_imagenet", device="cpu")
    cfg = DecodeConfig(fps=fps, size=enc.input_size)
    print(f"\n1d. slots and stored KB per minute of footage at {fps:g} fps, real MobileNetV2")
    print(f"   {'clip':<26}{'memory':<22}{'slots':>6}{'slots/min':>11}{'KB/min':>9}{'event':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        clips = {
            "static camera (80 s)": static_clip(
                Path(tmp) / "static.mp4", SHARED / "testdata" / CLIPS[0]
            ),
            **{c: SHARED / "testdata" / c for c in CLIPS},
        }
        for name, path in clips.items():
            parts = [enc.encode(b.frames, b.timestamps) for b in decode(path, cfg)]
            x = torch.cat([p.tokens for p in parts])
            ts = torch.cat([p.timestamps for p in parts])
            emb = torch.cat([p.embedding for p in parts if p.embedding is not None])
            minutes = x.shape[0] / fps / 60
            for label, mc in (("before (cosine)", BEFORE), ("default (token_min)", MemoryConfig())):
                m = build(mc, x, ts, emb)
                kb = stored_bytes(len(m), 0, 49, 1280, 1280) / 1024 / minutes
                ev = ""
                if name.startswith("static"):
                    ev = "yes" if event_kept(m.start_s, m.end_s, 30.0, 36.0) else "no"
                print(
                    f"   {name:<26}{label:<22}{len(m):>6}{len(m) / minutes:>11.1f}{kb:>9.0f}{ev:>7}"
                )


# --------------------------------------------------------------------------- cost


def vm_hwm_kb() -> int:
    """Peak resident set size of this process (Linux /proc), in KB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("VmHWM not found in /proc/self/status")


def token_stream(frames: int, n: int, d: int, seed: int = 0) -> Iterator[FrameTokens]:
    """Batches of a slowly drifting 'video' of [n, d] tokens with cuts every ~300 frames."""
    g = torch.Generator().manual_seed(seed)
    state = torch.randn(n, d, generator=g)
    for i in range(0, frames, BATCH):
        b = min(BATCH, frames - i)
        if i % 320 == 0:
            state = torch.randn(n, d, generator=g)
        steps = torch.randn(b, n, d, generator=g) * 0.05
        x = state + torch.cumsum(steps, 0)
        state = x[-1].clone()
        ts = torch.arange(i, i + b, dtype=torch.float64)
        yield FrameTokens(x, ts, x.mean(1))


def rss_child(config_name: str, frames: int) -> None:
    """Subprocess body: stream ``frames`` frames of [32, 768] into one builder; print
    VmHWM (KB) after 1K frames, after all frames and after ``finish`` as JSON. Both
    checkpoints are in one process, so the difference is the builder's own growth."""
    torch.set_num_threads(1)  # one allocator arena: less run-to-run noise
    builder = MemoryBuilder(CONFIGS[config_name])
    at_1k = 0
    for batch in token_stream(frames, 32, 768):
        builder.add(batch)
        if at_1k == 0 and builder.frames_seen >= 1_000:
            at_1k = vm_hwm_kb()
    at_end = vm_hwm_kb()
    mem = builder.finish("bench", "none")
    print(
        json.dumps({"at_1k": at_1k, "at_end": at_end, "finished": vm_hwm_kb(), "slots": len(mem)})
    )


def measure_rss(config_name: str, frames: int) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", config_name, str(frames)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def time_builder(cfg: MemoryConfig, frames: int, n: int, d: int) -> tuple[float, VideoMemory]:
    """Seconds per frame spent in the builder (token generation excluded)."""
    batches = list(token_stream(frames, n, d))
    builder = MemoryBuilder(cfg)
    t0 = time.perf_counter()
    for fb in batches:
        builder.add(fb)
    mem = builder.finish("bench", "none")
    return (time.perf_counter() - t0) / frames, mem


def drop_table(frames: int, enc: float | None) -> None:
    """Consolidation with token dropping (token_tau) vs without, on the same frames;
    and the dropping alone (``drop_tokens`` on the final slots, best of 3), which the
    whole-builder difference hides in run-to-run noise."""
    from videomem.memory.redundancy import drop_tokens

    print("   with token dropping (MemoryConfig.token_tau; the default config otherwise):")
    base = None
    for tau in (0.0, 0.1, 0.3):
        per, mem = time_builder(
            dataclasses.replace(MemoryConfig(), token_tau=tau), frames, 49, 1280
        )
        base = base or per
        kept = 1.0 if mem.keep is None else float(mem.keep.float().mean())
        ratio = f" = {100 * per / enc:6.3f}% of the encoder (target < 2%)" if enc else ""
        print(
            f"   token_tau={tau:<12g} {per * 1e3:7.3f} ms/frame{ratio}, "
            f"{per / base:.2f}x without dropping  [{len(mem)} slots, {kept:.0%} of tokens kept]"
        )
    _, mem = time_builder(MemoryConfig(), frames, 49, 1280)
    slots = mem.tokens.float()
    for tau in (0.1, 0.3):
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            drop_tokens(slots, tau)
            best = min(best, time.perf_counter() - t0)
        share = f" = {100 * best / frames / enc:6.3f}% of the encoder" if enc else ""
        print(
            f"   drop_tokens alone, tau={tau:<5g} {best * 1e3:7.1f} ms on {len(mem)} slots: "
            f"{best / frames * 1e3:7.4f} ms/frame{share}"
        )


def time_encoder(batch: int = 16, repeats: int = 3) -> float:
    """Seconds per frame of the real MobileNetV2 on random 224 px frames (this thread count)."""
    import numpy as np
    from videomem.encoders import load_encoder

    enc = load_encoder(SHARED / "models" / "mobilenet_v2_imagenet", device="cpu")
    frames = np.random.default_rng(0).integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8)
    enc.encode(frames)  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        enc.encode(frames)
    return (time.perf_counter() - t0) / (repeats * batch)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="one seed, fewer frames")
    ap.add_argument(
        "--fps", type=float, nargs="+", default=[1.0, 4.0], help="sampling rates of the real clips"
    )
    ap.add_argument("--rss-child", nargs=2, metavar=("CONFIG", "FRAMES"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.rss_child[0], int(args.rss_child[1]))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    d = MemoryConfig()
    print(
        f"default: method={d.method} metric={d.metric} threshold={d.threshold} "
        f"max_span_s={d.max_span_s} long_term_len={d.long_term_len}"
    )
    print(f"         keep_recent={d.keep_recent}")

    synthetic_section(1 if args.quick else 3)
    static_table()
    have_real = all([real_section(fps) for fps in args.fps])
    if have_real:
        for fps in args.fps:
            footage_table(fps)

    frames = 2_000 if args.quick else 5_000
    print(f"\n2. consolidation time per frame over {frames} frames of [49, 1280] tokens (cuts")
    print("   every ~320 frames, slow drift between) vs the encoder's time per frame, both on")
    print("   one thread (on a busy 2-core machine, small ops split over 2 threads stall for ms)")
    torch.set_num_threads(1)
    enc = time_encoder() if have_real else None
    if enc is None:
        print("   (no real MobileNetV2 here: encoder time not measured)")
    else:
        print(f"   real MobileNetV2 forward (224 px, batches of 16): {enc * 1e3:.1f} ms/frame")
    for name, cfg in CONFIGS.items():
        per, mem = time_builder(cfg, frames, 49, 1280)
        ratio = f" = {100 * per / enc:6.3f}% of the encoder (target < 2%)" if enc else ""
        print(f"   {name:<22} {per * 1e3:7.3f} ms/frame{ratio}  [{len(mem)} slots]")
    drop_table(frames, enc)

    print("\n3. peak RSS (VmHWM) growth per frame between 1K and 10K frames of [32, 768] tokens")
    print("   (one process per config); MovieChat reports 21.3 KB/frame (GPU); target < 1 KB/frame")
    for name in CONFIGS:
        r = measure_rss(name, 10_000)
        per = (r["at_end"] - r["at_1k"]) / 9_000
        print(
            f"   {name:<22} peak at 1K {r['at_1k'] / 1024:6.1f} MB, at 10K {r['at_end'] / 1024:6.1f} MB:"
            f" {per:+.4f} KB/frame; after finish {r['finished'] / 1024:6.1f} MB ({r['slots']} slots)"
        )


if __name__ == "__main__":
    main()

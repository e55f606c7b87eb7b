"""Benchmark of the memory builder: bounded memory, consolidation cost, quality.

    python bench/memory.py           # quick (~1-2 min on 2 CPU cores)
    python bench/memory.py --full    # more frames and encoder repeats

Prints, all measured in this run on this machine:

1. Peak-RSS growth per frame between 1K and 10K frames of ``[32, 768]`` tokens, each
   size in a fresh subprocess (VmHWM). MovieChat reports 21.3 KB/frame of GPU memory;
   the target here is < 1 KB/frame.
2. Consolidation time per frame as a ratio of one encoder forward per frame: a randomly
   initialised transformers CLIP ViT-B/16 vision model (224 px, patch 16) on a batch,
   on this CPU. Target < 2%.
3. Scene recall / slot purity on synthetic scenes of very uneven length for the
   ``moviechat`` method (each metric), the reference preset, ``mbc``, and two
   baselines: uniform sampling (every k-th frame) and FIFO (the last L frames).

Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time

import torch
from videomem.memory.builder import MemoryBuilder
from videomem.memory.quality import (
    fifo_spans,
    scene_recall,
    slot_purity,
    synthetic_scenes,
    uniform_spans,
)
from videomem.pipeline.types import FrameTokens, MemoryConfig

N, D, BATCH = 32, 768, 32

CONFIGS: dict[str, MemoryConfig] = {
    "moviechat (default)": MemoryConfig(),
    "moviechat_reference": MemoryConfig.preset("moviechat_reference"),
    "mbc": MemoryConfig(method="mbc"),
}


def vm_hwm_kb() -> int:
    """Peak resident set size of this process (Linux /proc), in KB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("VmHWM not found in /proc/self/status")


def token_stream(frames: int, seed: int = 0):
    """Batches of a slowly drifting 'video' of [32, 768] tokens, made on the fly."""
    g = torch.Generator().manual_seed(seed)
    state = torch.randn(N, D, generator=g)
    for i in range(0, frames, BATCH):
        b = min(BATCH, frames - i)
        steps = torch.randn(b, N, D, generator=g) * 0.05
        x = state + torch.cumsum(steps, 0)
        state = x[-1].clone()
        ts = torch.arange(i, i + b, dtype=torch.float64)
        yield FrameTokens(x, ts, x.mean(1))


def rss_child(config_name: str, frames: int) -> None:
    """Subprocess body: stream ``frames`` frames into one builder; print VmHWM (KB) after
    1K frames, after all frames, and after ``finish`` as JSON.

    Both checkpoints are in the same process, so the difference is the builder's own
    growth, not process-to-process allocator noise (several MB between fresh runs).
    """
    # One thread: glibc gives every allocating thread its own arena, which adds a few
    # MB of run-to-run noise unrelated to the builder.
    torch.set_num_threads(1)
    builder = MemoryBuilder(CONFIGS[config_name])
    at_1k = 0
    for batch in token_stream(frames):
        builder.add(batch)
        if at_1k == 0 and builder.frames_seen >= 1_000:
            at_1k = vm_hwm_kb()
    at_end = vm_hwm_kb()
    mem = builder.finish("bench", "none")
    out = {"at_1k": at_1k, "at_end": at_end, "finished": vm_hwm_kb(), "slots": len(mem)}
    print(json.dumps(out))


def measure_rss(config_name: str, frames: int) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", config_name, str(frames)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def time_builder(cfg: MemoryConfig, frames: int) -> float:
    """Seconds per frame spent in the builder (token generation excluded)."""
    batches = list(token_stream(min(frames, 16 * BATCH)))  # reused cyclically
    builder = MemoryBuilder(cfg)
    spent = 0.0
    t_off = 0.0
    done = 0
    while done < frames:
        for fb in batches:
            if done >= frames:
                break
            fb = FrameTokens(fb.tokens, fb.timestamps + t_off, fb.embedding)
            t0 = time.perf_counter()
            builder.add(fb)
            spent += time.perf_counter() - t0
            done += len(fb)
        t_off += len(batches) * BATCH
    t0 = time.perf_counter()
    builder.finish("bench", "none")
    spent += time.perf_counter() - t0
    return spent / frames


def time_encoder(batch: int, repeats: int) -> float:
    """Seconds per frame of a random-init CLIP ViT-B/16 vision forward on this CPU."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    model = CLIPVisionModel(CLIPVisionConfig(image_size=224, patch_size=16)).eval()
    pixels = torch.randn(batch, 3, 224, 224)
    with torch.inference_mode():
        model(pixel_values=pixels)  # warm-up
        t0 = time.perf_counter()
        for _ in range(repeats):
            model(pixel_values=pixels)
        return (time.perf_counter() - t0) / (repeats * batch)


def quality_table(budget: int) -> None:
    lengths = [500, 20, 30, 800, 6, 200, 40, 1000, 12, 300]  # K = 10, very uneven
    print(
        f"\n3. scene recall / slot purity: K={len(lengths)} scenes of {lengths} frames, L={budget}"
    )
    rows: dict[str, list[tuple[float, float]]] = {}
    methods = {
        "moviechat cosine": MemoryConfig(long_term_len=budget),
        "moviechat dot": MemoryConfig(long_term_len=budget, metric="dot"),
        "moviechat token_cosine": MemoryConfig(long_term_len=budget, metric="token_cosine"),
        # the reference with the same budget: it drops the oldest slots past it
        "moviechat_reference": dataclasses.replace(
            MemoryConfig.preset("moviechat_reference"), long_term_len=budget
        ),
        "mbc": MemoryConfig(method="mbc", long_term_len=budget),
    }
    for seed in range(3):
        x, ts, bounds = synthetic_scenes(lengths, n=N, d=64, noise=0.7, seed=seed)
        for name, cfg in methods.items():
            b = MemoryBuilder(cfg)
            for i in range(0, x.shape[0], BATCH):
                b.add(FrameTokens(x[i : i + BATCH], ts[i : i + BATCH]))
            m = b.finish("q", "none")
            rows.setdefault(name, []).append(
                (scene_recall(m.start_s, m.end_s, bounds), slot_purity(m.start_s, m.end_s, bounds))
            )
        for name, fn in (("uniform (every k-th)", uniform_spans), ("fifo (last L)", fifo_spans)):
            s, e = fn(ts, budget)
            rows.setdefault(name, []).append(
                (scene_recall(s, e, bounds), slot_purity(s, e, bounds))
            )
    print(f"   {'method':<26}{'recall':>8}{'purity':>8}   (mean of 3 seeds)")
    for name, vals in rows.items():
        r = sum(v[0] for v in vals) / len(vals)
        p = sum(v[1] for v in vals) / len(vals)
        print(f"   {name:<26}{r:>8.2f}{p:>8.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--full", action="store_true", help="more frames and encoder repeats")
    ap.add_argument("--quick", action="store_true", help="the default: fewer frames")
    ap.add_argument("--rss-child", nargs=2, metavar=("CONFIG", "FRAMES"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.rss_child[0], int(args.rss_child[1]))
        return
    torch.set_num_threads(torch.get_num_threads())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, tokens [{N}, {D}]")

    print("\n1. peak RSS (VmHWM) growth per frame between 1K and 10K frames (one process per")
    print("   config); MovieChat reports 21.3 KB/frame (GPU memory); target < 1 KB/frame")
    for name in CONFIGS:
        r = measure_rss(name, 10_000)
        per = (r["at_end"] - r["at_1k"]) / 9_000
        print(
            f"   {name:<20} peak at 1K {r['at_1k'] / 1024:6.1f} MB, at 10K {r['at_end'] / 1024:6.1f} MB:"
            f" {per:+.4f} KB/frame;  after finish {r['finished'] / 1024:6.1f} MB ({r['slots']} slots)"
        )

    frames = 10_000 if args.full else 3_000
    enc_batch, enc_rep = (8, 3) if args.full else (4, 2)
    print(
        f"\n2. consolidation time per frame over {frames} frames vs one encoder forward per frame"
    )
    enc = time_encoder(enc_batch, enc_rep)
    print(
        f"   CLIP ViT-B/16 vision forward (random init, 224 px, batch {enc_batch}): {enc * 1e3:.1f} ms/frame"
    )
    for name, cfg in CONFIGS.items():
        per = time_builder(cfg, frames)
        print(
            f"   {name:<22} {per * 1e3:7.3f} ms/frame  = {100 * per / enc:6.3f}% of the encoder (target < 2%)"
        )

    quality_table(budget=24)


if __name__ == "__main__":
    main()

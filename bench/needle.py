"""Needles in an hour of video: does a one-second event survive consolidation? And how
many tokens of each slot change against the slot before (token-level redundancy)?

    python bench/needle.py            # 4 seeds, an hour per stream (~5 min on 2 cores)
    python bench/needle.py --quick    # 1 seed, 20 minutes per stream (~1 min)

Prints, all measured in this run (``memory.needle``, ``memory.redundancy``):

1. Needle recall of ``adaptive`` (the default config), ``adaptive+ev`` (the default
   with ``keep_events``), the ``moviechat`` preset and
   uniform sampling (every k-th frame) at L = 32, 64, 256 slots, and of the default
   at L = K + n and K + 2n (K scenes, n needles: the issue's goal is recall 1.00 at
   L >= K + n), on
   (a) synthetic 1 fps streams: K scenes of very uneven length (``uneven_lengths``),
       each a random [16, 32] token pattern plus noise;
   (b) real tokens: the three sample clips (../shared/testdata) encoded once by the
       real ImageNet MobileNetV2 ([49, 1280]) at --real-fps, joined and looped (the
       tokens, not the video) to the same length; every clip of every loop is a scene.
   Each seed places 3, 2 or 1 needles (seed 0, 1, 2, ...) of one frame, and of one
   second where that is more than one frame (real clips at --real-fps 2; at 1 fps
   the two are the same), at random places: frames of another scene (or clip).
   Recall = needles recalled / needles placed, over all seeds; beside it the scene
   recall (``quality.scene_recall``: scenes holding a whole slot), mean over seeds. --scenes 12 by
   default, as the issue's "12 uneven scenes".
2. Token dropping (``MemoryConfig.token_tau``, ``redundancy.drop_tokens``) of the same
   memories (seed 0) and of the default memory of the sample clips joined (at 1 and 4
   fps, built by the builder with token_tau): at each tau, the fraction of tokens per
   slot against the previous slot ("vs prev", what TimeChat-Online compares) and the
   fraction actually stored (against the last kept token, what drop_tokens keeps), the
   stored tokens per slot and per video-hour, the bytes per slot and MB per video-hour
   of the rows the store would write (``memory_rows``/``stored_bytes``: float16 kept
   tokens, their int16 positions, sizes and spans), and the needle recall when only
   the stored tokens are compared (``needle_hits(keep=...)``).

Times are printed, never asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch
from videomem.memory.builder import MemoryBuilder
from videomem.memory.config import MemoryConfig
from videomem.memory.needle import (
    TokenStream,
    insert_needles,
    looped_stream,
    needle_hits,
    synthetic_stream,
    uneven_lengths,
    uniform_memory,
)
from videomem.memory.quality import scene_recall
from videomem.memory.redundancy import drop_tokens, kept_fraction, kept_positions
from videomem.memory.store.schema import memory_rows, stored_bytes
from videomem.memory.types import VideoMemory
from videomem.pipeline.types import FrameTokens

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CLIPS = ("bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4")
BUDGETS = (32, 64, 256)
TAUS = (0.0, 0.05, 0.1, 0.2, 0.3)
BATCH = 32

#: a memory as the recall measure reads it: tokens [L, N, D], start_s [L], end_s [L]
Memory = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def have_real() -> bool:
    """The sample clips and the real MobileNetV2 are here (../shared)."""
    return (SHARED / "testdata").is_dir() and (SHARED / "models" / "mobilenet_v2_imagenet").is_dir()


def build(cfg: MemoryConfig, stream: TokenStream) -> Memory:
    b = MemoryBuilder(cfg)
    for x, ts in stream.batches(BATCH):
        b.add(FrameTokens(x, ts))
    m = b.finish("needle", "none")
    return m.tokens, m.start_s, m.end_s


def memories(stream: TokenStream) -> dict[tuple[str, str], Memory]:
    """Every memory of the tables for one stream with needles, by (method, L); L is
    "K+n" or "K+2n" for the budgets that depend on the stream."""
    k, n = stream.num_scenes, len(stream.needles)
    out: dict[tuple[str, str], Memory] = {}
    events = MemoryConfig(keep_events=True)
    for label, budget in (("K+n", k + n), ("K+2n", k + 2 * n)):
        out[("adaptive", label)] = build(MemoryConfig(long_term_len=budget), stream)
        out[("adaptive+ev", label)] = build(
            dataclasses.replace(events, long_term_len=budget), stream
        )
    for budget in BUDGETS:
        out[("adaptive", str(budget))] = build(MemoryConfig(long_term_len=budget), stream)
        out[("adaptive+ev", str(budget))] = build(
            dataclasses.replace(events, long_term_len=budget), stream
        )
        cfg = dataclasses.replace(MemoryConfig.preset("moviechat"), long_term_len=budget)
        out[("moviechat", str(budget))] = build(cfg, stream)
        out[("uniform", str(budget))] = uniform_memory(stream, budget)
    return out


def needle_kinds(fps: float) -> list[tuple[str, int]]:
    """One frame and one second (when that is more than one frame)."""
    kinds = [("1 frame", 1)]
    if round(fps) > 1:
        kinds.append(("1 second", round(fps)))
    return kinds


class Tally:
    """Hits and needles per (kind, method, L); slots; redundancy of seed 0."""

    def __init__(self) -> None:
        self.hits: dict[tuple[str, str, str], list[int]] = {}
        self.slots: dict[tuple[str, str, str], list[int]] = {}
        self.budget: dict[tuple[str, str, str], list[int]] = {}
        self.scenes: dict[tuple[str, str, str], list[float]] = {}
        self.redundancy: dict[
            tuple[str, str, str, float], tuple[float, float, int, float, int]
        ] = {}

    def add(self, kind: str, stream: TokenStream, seed: int, taus: bool) -> None:
        for (method, label), (x, s, e) in memories(stream).items():
            key = (kind, method, label)
            hits = needle_hits(x, s, e, stream)
            h = self.hits.setdefault(key, [0, 0])
            h[0] += sum(hits)
            h[1] += len(hits)
            self.slots.setdefault(key, []).append(int(x.shape[0]))
            self.budget.setdefault(key, []).append(_budget(label, stream))
            self.scenes.setdefault(key, []).append(scene_recall(s, e, stream.bounds))
            if taus and seed == 0 and method != "adaptive+ev":
                for tau in TAUS:
                    prev = kept_fraction(kept_positions(x, tau))
                    dense, keep = drop_tokens(x, tau)
                    kept = 1.0 if keep is None else kept_fraction(keep)
                    recall = sum(needle_hits(dense, s, e, stream, keep=keep)) / len(stream.needles)
                    size = rows_bytes(dense, s, e, keep, tau)
                    self.redundancy[(*key, tau)] = (prev, kept, int(x.shape[0]), recall, size)


def rows_bytes(
    tokens: torch.Tensor, s: torch.Tensor, e: torch.Tensor, keep: torch.Tensor | None, tau: float
) -> int:
    """What the store would write for these slots (``memory_rows``, float16 tokens)."""
    mem = VideoMemory(
        video_id="needle",
        tokens=tokens,
        sizes=torch.ones(len(tokens), dtype=torch.int64),
        start_s=s.double(),
        end_s=e.double(),
        embedding=None,
        encoder_fingerprint="none",
        memory_config=MemoryConfig(token_tau=tau),
        frames_seen=len(tokens),
        keep=keep,
    )
    return stored_bytes(memory_rows(mem, ("bench", "none", "none"), "bench"))


def _budget(label: str, stream: TokenStream) -> int:
    k, n = stream.num_scenes, len(stream.needles)
    return {"K+n": k + n, "K+2n": k + 2 * n}.get(label) or int(label)


def print_recall(title: str, tally: Tally) -> None:
    print(f"\n{title}")
    print(
        f"   {'needles':<10}{'method':<13}{'L':>6}{'mean L':>8}{'slots':>8}{'recall':>8}{'hits':>9}{'scenes':>8}"
    )
    for (kind, method, label), (hit, total) in tally.hits.items():
        slots = tally.slots[(kind, method, label)]
        budget = tally.budget[(kind, method, label)]
        scenes = tally.scenes[(kind, method, label)]
        print(
            f"   {kind:<10}{method:<13}{label:>6}{sum(budget) / len(budget):>8.1f}"
            f"{sum(slots) / len(slots):>8.1f}{hit / total:>8.2f}{f'{hit}/{total}':>9}"
            f"{sum(scenes) / len(scenes):>8.3f}"
        )


def print_redundancy(title: str, tally: Tally, n: int, d: int, hours: float) -> None:
    print(f"\n{title}")
    print(
        f"   {'memory':<17}{'slots':>6}{'tau':>6}{'vs prev':>8}{'stored':>8}{'tok/slot':>9}"
        f"{'tokens/h':>10}{'KB/slot':>9}{'MB/h':>8}{'recall':>8}"
    )
    for (kind, method, label, tau), row in tally.redundancy.items():
        if kind != "1 frame":
            continue
        prev, kept, slots, recall, size = row
        name = f"{method} L={label}"
        print(
            f"   {name:<17}{slots:>6}{tau:>6.2f}{prev:>8.1%}{kept:>8.1%}{kept * n:>9.1f}"
            f"{kept * slots * n / hours:>10.0f}{size / slots / 1e3:>9.2f}"
            f"{size / hours / 1e6:>8.2f}{recall:>8.2f}"
        )


def synthetic_section(scenes: int, seconds: int, seeds: int) -> None:
    tally = Tally()
    lengths = uneven_lengths(scenes, seconds, seed=0)
    for seed in range(seeds):
        base = synthetic_stream(lengths, n=16, d=32, noise=0.5, seed=seed)
        stream = insert_needles(base, 3 - seed % 3, frames=1, seed=seed)
        tally.add("1 frame", stream, seed, taus=True)
    print_recall(
        f"1a. needle recall, synthetic: {scenes} scenes of {min(lengths)}-{max(lengths)} frames "
        f"({seconds} frames at 1 fps, [16, 32] tokens, noise 0.5), {seeds} seed(s)",
        tally,
    )
    print_redundancy(
        "2a. token dropping, synthetic (seed 0: 3 needles), per video-hour at [16, 32] float16",
        tally,
        16,
        32,
        seconds / 3600,
    )


def encode_clips(fps: float) -> tuple[torch.Tensor, list[int], float]:
    """The three clips at ``fps``, encoded by the real MobileNetV2 once: tokens
    ``[P, 49, 1280]``, frames per clip, encode seconds."""
    from videomem.encoders import load_encoder
    from videomem.pipeline.decode import decode
    from videomem.pipeline.types import DecodeConfig

    enc = load_encoder(SHARED / "models" / "mobilenet_v2_imagenet", device="cpu")
    cfg = DecodeConfig(fps=fps, size=enc.input_size)
    xs, counts = [], []
    t0 = time.perf_counter()
    for clip in CLIPS:
        parts = [
            enc.encode(b.frames, b.timestamps).tokens
            for b in decode(SHARED / "testdata" / clip, cfg)
        ]
        xs += parts
        counts.append(sum(int(p.shape[0]) for p in parts))
    return torch.cat(xs).float(), counts, time.perf_counter() - t0


def real_section(fps: float, seconds: int, seeds: int) -> None:
    if not have_real():
        print(f"\n1b. skipped: no {SHARED}/testdata or models/mobilenet_v2_imagenet")
        return
    x, counts, spent = encode_clips(fps)
    looped = looped_stream(x, counts, seconds, fps)
    tally = Tally()
    for seed in range(seeds):
        for kind, frames in needle_kinds(fps):
            stream = insert_needles(looped, 3 - seed % 3, frames=frames, seed=seed)
            tally.add(kind, stream, seed, taus=kind == "1 frame")
    print_recall(
        f"1b. needle recall, real: {', '.join(CLIPS)} at {fps:g} fps ({counts} frames, encoded "
        f"once in {spent:.1f} s) looped to {len(looped)} frames: {looped.num_scenes} scenes, "
        f"{seeds} seed(s)",
        tally,
    )
    print_redundancy(
        "2b. token dropping, real looped (seed 0: 3 needles), per video-hour at "
        "MobileNetV2's [49, 1280] float16",
        tally,
        49,
        1280,
        seconds / 3600,
    )


def clips_redundancy() -> None:
    """The default memory of the three clips joined, as indexed (no needles, no loop)."""
    if not have_real():
        return
    print("\n2c. token dropping in the default memory of the sample clips joined (builder")
    print("    with token_tau; bytes of the rows memory_rows writes, float16)")
    print(
        f"   {'fps':>5}{'slots':>6}{'tau':>6}{'vs prev':>8}{'stored':>8}{'tok/slot':>9}"
        f"{'tokens/h':>10}{'KB/slot':>9}{'MB/h':>8}"
    )
    for fps in (1.0, 4.0):
        x, _, _ = encode_clips(fps)
        ts = torch.arange(x.shape[0], dtype=torch.float64) / fps
        hours = x.shape[0] / fps / 3600
        for tau in TAUS:
            b = MemoryBuilder(MemoryConfig(token_tau=tau))
            for i in range(0, x.shape[0], BATCH):
                b.add(FrameTokens(x[i : i + BATCH], ts[i : i + BATCH]))
            mem = b.finish("clips", "none")
            prev = kept_fraction(kept_positions(mem.tokens, tau))
            kept = 1.0 if mem.keep is None else kept_fraction(mem.keep)
            size = stored_bytes(memory_rows(mem, ("bench", "none", "none"), "bench"))
            print(
                f"   {fps:>5g}{len(mem):>6}{tau:>6.2f}{prev:>8.1%}{kept:>8.1%}{kept * 49:>9.1f}"
                f"{kept * len(mem) * 49 / hours:>10.0f}{size / len(mem) / 1e3:>9.2f}"
                f"{size / hours / 1e6:>8.1f}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="1 seed, 20 minutes per stream")
    ap.add_argument("--seeds", type=int, help="seeds per stream (default 4; --quick 1)")
    ap.add_argument("--minutes", type=int, help="length of each stream (default 60; --quick 20)")
    ap.add_argument("--scenes", type=int, default=12, help="scenes of the synthetic stream")
    ap.add_argument("--real-fps", type=float, default=1.0, help="sampling rate of the real clips")
    args = ap.parse_args()
    seeds = args.seeds or (1 if args.quick else 4)
    seconds = 60 * (args.minutes or (20 if args.quick else 60))
    torch.set_num_threads(1)  # small ops on a busy 2-core machine stall when split
    print(f"torch {torch.__version__}, 1 thread; scale: {seconds} s streams, {seeds} seed(s)")
    d = MemoryConfig()
    print(
        f"default: {d.method} metric={d.metric} threshold={d.threshold} max_span_s={d.max_span_s}"
    )
    t0 = time.perf_counter()
    synthetic_section(args.scenes, seconds, seeds)
    real_section(args.real_fps, seconds, seeds)
    clips_redundancy()
    print(f"\n(bench ran {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()

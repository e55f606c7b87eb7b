"""Index-stage throughput: does decoding overlap encoding?

On the same videos, with the same encoder, in the same run, measures

* decode-only   frames/s — consuming ``pipeline.decode.decode`` and nothing else;
* encode-only   frames/s — ``encoder.encode`` on frames decoded beforehand (held in memory);
* end-to-end    frames/s — the local executor over all the videos (probe → decode
  thread → encode → consolidate, the next video probed and decoded while the current
  one encodes): what ``videomem index`` runs, minus the store;

and prints the overlap efficiency ``max(decode, encode) / end_to_end`` (1.0 = the
slower stage fully hides the other; a no-overlap pipeline scores
``max / (decode + encode)``). Target >= 0.9.

Two encoders: the tiny random LLaVA (``--model tiny``; encode is nearly free, so the
run is decode-bound) and a random-weight CLIP vision tower of ViT-S/16 size at 224 px
(so encode is not negligible). Weights are random: only speed is measured.

    python bench/index.py           # default, ~1-2 minutes on 2 CPU cores
    python bench/index.py --quick   # smaller
    python bench/index.py --full    # more and longer videos
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


def make_videos(out: Path, n: int, seconds: float, size: str) -> list[Path]:
    from videomem.pipeline.ffmpeg import find_ffmpeg

    ffmpeg = find_ffmpeg()
    paths = []
    for i, src in zip(
        range(n), ["testsrc2", "smptebars", "mandelbrot", "life", "testsrc"] * n, strict=False
    ):
        p = out / f"v{i}.mp4"
        subprocess.run(
            [ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", f"{src}=size={size}:rate=25",
             "-t", str(seconds), "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "veryfast",
             str(p)],
            check=True,
        )  # fmt: skip
        paths.append(p)
    return paths


def build_moderate_clip(out: Path) -> Path:
    """A CLIP checkpoint with a ViT-S/16 vision tower at 224 px, random weights."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor
    from videomem.encoders.testing import build_tiny

    build_tiny("clip", out)  # tokenizer + processor files
    tiny = CLIPConfig.from_pretrained(out)
    config = CLIPConfig(
        vision_config=dict(
            hidden_size=384,
            intermediate_size=1536,
            num_hidden_layers=6,
            num_attention_heads=6,
            image_size=224,
            patch_size=16,
        ),
        text_config=tiny.text_config.to_dict(),
        projection_dim=256,
    )
    torch.manual_seed(0)
    CLIPModel(config).eval().save_pretrained(out)
    processor = CLIPProcessor.from_pretrained(out)
    processor.image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}
    )
    processor.save_pretrained(out)
    return out


def bench_model(name: str, ckpt: Path, videos: list[Path], fps: float, batch: int) -> dict:
    import torch
    from videomem.encoders.config import EncoderConfig
    from videomem.encoders.registry import load_encoder
    from videomem.jobs.executor import LocalExecutor
    from videomem.jobs.index import IndexStepSpec, TaskSpec, WorkItem
    from videomem.memory.config import MemoryConfig
    from videomem.pipeline.decode import decode
    from videomem.pipeline.probe import probe
    from videomem.pipeline.types import DecodeConfig

    enc = load_encoder(ckpt, "cpu", batch_size=batch)
    cfg = DecodeConfig(fps=fps, size=enc.input_size, batch_size=batch)
    mem_cfg = MemoryConfig()
    sources = [probe(str(v)) for v in videos]
    enc.encode(torch.zeros((2, *enc.input_size, 3), dtype=torch.uint8).numpy())  # warm-up

    # decode-only (also keeps the frames for encode-only)
    t = time.perf_counter()
    batches = [b for v, s in zip(videos, sources, strict=True) for b in decode(str(v), cfg, s)]
    decode_s = time.perf_counter() - t
    frames = sum(len(b) for b in batches)

    t = time.perf_counter()
    for b in batches:
        enc.encode(b.frames, b.timestamps)
    encode_s = time.perf_counter() - t
    del batches

    # end to end as `videomem index` runs it (minus the store): the local executor,
    # which probes and decodes the next video while the current one encodes
    ex = LocalExecutor(IndexStepSpec(EncoderConfig(str(ckpt), device="cpu", batch_size=batch)))
    ex.start()
    task = TaskSpec(decode=cfg, memory=mem_cfg, config_hash="bench", model=name, encoder={})
    items = [WorkItem(str(v), f"v{i}") for i, v in enumerate(videos)]
    t = time.perf_counter()
    outs = [o for part in ex.run(items, task) for o in part]
    e2e_s = time.perf_counter() - t
    ex.close()
    n = sum(o.record.frames_sampled for o in outs)
    if n != frames:
        raise SystemExit(f"{name}: end-to-end saw {n} frames, decode-only {frames}")
    return dict(
        name=name,
        frames=frames,
        input_size=enc.input_size,
        decode_s=decode_s,
        encode_s=encode_s,
        e2e_s=e2e_s,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="2 short videos")
    size.add_argument("--full", action="store_true", help="6 longer, larger videos")
    ap.add_argument("--fps", type=float, default=4.0, help="sampling rate (frames/s)")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    n, seconds, res = (
        (2, 8, "320x240") if args.quick else (6, 40, "640x360") if args.full else (3, 12, "320x240")
    )

    import torch
    from videomem.encoders.testing import tiny_checkpoint

    tmp = Path(tempfile.mkdtemp(prefix="videomem-bench-"))
    try:
        videos = make_videos(tmp, n, seconds, res)
        print(
            f"{n} videos x {seconds}s at {res} 25 fps, sampled at {args.fps} fps, batch "
            f"{args.batch_size}, torch threads {torch.get_num_threads()}"
        )
        rows = [
            bench_model(
                "tiny-llava",
                tiny_checkpoint("llava", tmp / "cache"),
                videos,
                args.fps,
                args.batch_size,
            ),
            bench_model(
                "clip-vit-s16-224",
                build_moderate_clip(tmp / "clip"),
                videos,
                args.fps,
                args.batch_size,
            ),
        ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(f"{'encoder':18} {'frames':>6} {'decode f/s':>10} {'encode f/s':>10} {'e2e f/s':>9} "
          f"{'serial f/s':>10} {'overlap eff':>11} {'no-overlap eff':>14}")  # fmt: skip
    for r in rows:
        f = r["frames"]
        slow = max(r["decode_s"], r["encode_s"])
        serial = r["decode_s"] + r["encode_s"]
        print(
            f"{r['name']:18} {f:>6} {f / r['decode_s']:>10.1f} {f / r['encode_s']:>10.1f} "
            f"{f / r['e2e_s']:>9.1f} {f / serial:>10.1f} {slow / r['e2e_s']:>11.2f} {slow / serial:>14.2f}"
        )
    print(
        "\noverlap eff = max(decode, encode) / end-to-end time (1.0 = perfect overlap; "
        "target >= 0.9);\nserial = decode + encode back to back (the no-overlap baseline); "
        "end-to-end also probes and consolidates."
    )


if __name__ == "__main__":
    main()

"""Questions/s of the QA stage with and without prefix-cache reuse, on a ~2K-token
video prefix and 20 questions; prefill time; peak memory. The baseline (every question
prefills its whole prompt) is measured in the same run, and the answers of every mode
are checked token-identical to it.

Model: a LLaVA-OneVision layout (tiny vision side: the bench feeds stored tokens) with a
Qwen2 language model of real-ish width (``--hidden``, ``--layers``; quick: 384 x 4), random weights,
built from transformers' config classes, saved and loaded through ``load_qa_model``
like a user's checkpoint. Memory: ``slots`` x 9 tokens of the LM's width, float16 as
stored, each slot preceded by its time span (the default prompt style); the slot count
is chosen so the video prefix is ~2K tokens.

    python bench/qa.py            # --quick (default): 20 questions, 4 and 16 new tokens
    python bench/qa.py --full     # also 64 new tokens and a wider LM
    python bench/qa.py --device cuda
    python bench/qa.py --threads 1  # on a shared CPU machine under load
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import torch

QUESTIONS = [
    f"what {w} in this video {tail} ?"
    for w in ("happens", "is", "is the frame", "happens to the frame", "is a frame")
    for tail in ("", "and what of the video", "to the answer", "of this question")
]


def build_model(out: Path, hidden: int, layers: int) -> Path:
    """The tiny OneVision checkpoint with its LM swapped for a wider Qwen2."""
    import transformers
    from videomem.encoders.testing import tiny_checkpoint

    tiny = tiny_checkpoint("llava_onevision", out.parent / "tiny-cache")
    config = transformers.AutoConfig.from_pretrained(tiny)
    text = transformers.Qwen2Config(
        vocab_size=config.text_config.vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 3,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        num_key_value_heads=max(1, hidden // 256),
        max_position_embeddings=8192,
        pad_token_id=config.text_config.pad_token_id,
        bos_token_id=config.text_config.bos_token_id,
        eos_token_id=config.text_config.eos_token_id,
    )
    config.text_config = text
    torch.manual_seed(0)
    transformers.LlavaOnevisionForConditionalGeneration(config).save_pretrained(out)
    for f in tiny.iterdir():
        if f.suffix in (".json", ".jinja") and f.name not in (
            "config.json",
            "generation_config.json",
        ):
            shutil.copy(f, out / f.name)
    return out


class PeakRSS:
    """Peak resident memory of this process while the block runs (sampled every 5 ms),
    and GPU peak allocation when on CUDA."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = self.base = 0
        self._stop = threading.Event()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _watch(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> PeakRSS:
        self.base = self.peak = self.rss()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._t = threading.Thread(target=self._watch, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.rss())
        self.gpu_peak = (
            torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda" else 0
        )


def memory_of(slots: int, tokens: int, dim: int):  # type: ignore[no-untyped-def]
    from videomem.memory.config import MemoryConfig
    from videomem.memory.types import VideoMemory

    g = torch.Generator().manual_seed(0)
    return VideoMemory(
        video_id="bench",
        tokens=(torch.randn(slots, tokens, dim, generator=g) * 0.5).half(),
        sizes=torch.ones(slots, dtype=torch.int64),
        start_s=torch.arange(slots, dtype=torch.float64),
        end_s=torch.arange(slots, dtype=torch.float64) + 1,
        embedding=None,
        encoder_fingerprint="bench",
        memory_config=MemoryConfig(),
        frames_seen=slots,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="default")
    mode.add_argument("--full", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--hidden", type=int, default=None)
    ap.add_argument("--layers", type=int, default=None)
    ap.add_argument("--prefix-tokens", type=int, default=2048)
    ap.add_argument("--questions", type=int, default=20)
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (on a busy shared machine 1 avoids thread-wait stalls)",
    )
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from videomem.qa import GenerationSettings, answer, load_qa_model
    from videomem.qa.visual import global_visual

    hidden = args.hidden or (768 if args.full else 384)
    layers = args.layers or (6 if args.full else 4)
    new_tokens = [4, 16, 64] if args.full else [4, 16]
    questions = (QUESTIONS * 4)[: args.questions]
    tmp = Path(tempfile.mkdtemp(prefix="vm-bench-qa-"))
    try:
        ckpt = build_model(tmp / "model", hidden, layers)
        qa = load_qa_model(str(ckpt), args.device, args.dtype)
        n_tok = 9  # tiny OneVision: 6x6 patches pooled 2x2 -> 3x3 tokens per frame
        # slots for a ~prefix_tokens prefix: each slot costs its tokens + its span text
        one = qa.prompts.build(
            questions[0], global_visual(memory_of(1, n_tok, hidden)).spans, n_tok
        )
        ten = qa.prompts.build(
            questions[0], global_visual(memory_of(10, n_tok, hidden)).spans, n_tok
        )
        per_slot = (ten.prefix_len - one.prefix_len) / 9
        slots = max(1, round((args.prefix_tokens - one.prefix_len) / per_slot) + 1)
        mem = memory_of(slots, n_tok, hidden)
        view = global_visual(mem)
        p0 = qa.prompts.build(questions[0], view.spans, n_tok)
        feats = qa.visual_features(mem.tokens)
        qa.prefill(p0, feats)  # warm-up
        t = time.perf_counter()
        reps = 3
        for _ in range(reps):
            qa.prefill(p0, feats)
        prefill_s = (time.perf_counter() - t) / reps
        print(
            f"model: OneVision layout, Qwen2 LM width {hidden} x {layers} layers, "
            f"{qa.dtype_name} on {qa.device}; torch {torch.__version__}, {torch.get_num_threads()} threads"
        )
        print(
            f"video prefix: {p0.prefix_len} tokens ({slots} slots x {n_tok} tokens + span text), "
            f"prompt {len(p0.ids)} tokens; prefill {prefill_s * 1000:.0f} ms"
        )
        figures = {"prefix_tokens": p0.prefix_len, "prefill_s": prefill_s, "runs": []}
        for new in new_tokens:
            settings = GenerationSettings(max_new_tokens=new)
            modes = {
                "baseline (no reuse, 1 at a time)": dict(reuse_prefix=False, batch_size=1),
                "prefix reuse": dict(reuse_prefix=True),
                "no reuse, batch 4": dict(reuse_prefix=False, batch_size=4),
            }
            results = {}
            for name, kw in modes.items():
                with PeakRSS(qa.device) as mem_watch:
                    t = time.perf_counter()
                    out = answer(qa, mem, questions, settings, **kw)  # type: ignore[arg-type]
                    secs = time.perf_counter() - t
                results[name] = (out, secs, mem_watch)
            base_out, base_s, _ = results["baseline (no reuse, 1 at a time)"]
            base_tokens = [a.tokens for a in base_out]
            mean_new = sum(len(t) for t in base_tokens) / len(base_tokens)
            print(f"\n{len(questions)} questions, max {new} new tokens (mean {mean_new:.1f}):")
            print(f"  {'mode':34} {'q/s':>7} {'x base':>7} {'peak RSS +MiB':>14}  same tokens")
            for name, (out, secs, mw) in results.items():
                same = [a.tokens for a in out] == base_tokens
                qps = len(questions) / secs
                extra = (mw.peak - mw.base) / 2**20
                gpu = f" gpu peak {mw.gpu_peak / 2**20:.0f} MiB" if mw.gpu_peak else ""
                print(f"  {name:34} {qps:7.2f} {base_s / secs:7.2f} {extra:14.1f}  {same}{gpu}")
                figures["runs"].append(
                    dict(
                        mode=name,
                        max_new_tokens=new,
                        questions_per_s=qps,
                        ratio=base_s / secs,
                        peak_rss_growth_mib=extra,
                        gpu_peak_mib=mw.gpu_peak / 2**20,
                        token_identical=same,
                    )
                )
        print(f"\nprocess peak RSS {PeakRSS.rss() / 2**20:.0f} MiB (now)")
        if args.json:
            print(json.dumps(figures, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

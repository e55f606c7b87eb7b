"""What question-aware context adds to a question on the CPU, at 256 slots.

Per question: scoring the 256 slots of a view against it (``qa.relevance``: the
question embedded by the real all-MiniLM-L6-v2, its cosine with every line, the
best overlapping line per slot) and choosing the slots that stay whole
(``qa.selection``). The lines (one tags line per slot, a transcript of speech
lines, one of them a needle) are embedded once per memory run and cached; that cold first question is
printed apart. Then the cut itself (``qa.fit.cut_view`` to K = 64: the gaps merged
apart, for the needle's question) against the uniform merge to the same K, both
measured here on the same float16 tokens.

Goal (issue 21): scoring adds < 50 ms to a question at 256 slots on a CPU. The
ratio printed is p50 / 50 ms (< 1 meets it).

    python bench/relevance.py            # --quick (default): 40 questions, 49 x 128 tokens
    python bench/relevance.py --full     # 200 questions, 196 x 896 tokens (LLaVA-OneVision)
    python bench/relevance.py --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

GOAL_MS = 50.0
SLOTS, K, NEEDLE = 256, 64, 100
THINGS = ["street", "car", "tree", "bus", "bicycle", "dog", "umbrella", "shop", "sign", "bench"]


def lines_of(slots: int) -> list:
    """One tags line per slot (5 s each) and a speech line every fourth slot."""
    from videomem.qa.relevance import SlotText

    out = []
    for i in range(slots):
        tags = ", ".join(THINGS[(i * 7 + j) % len(THINGS)] for j in range(5))
        out.append(SlotText(i * 5.0, i * 5.0 + 5, tags))
        if i % 4 == 0:
            out.append(SlotText(i * 5.0 + 1, i * 5.0 + 3, f"we are at stop number {i}"))
    out.append(SlotText(NEEDLE * 5.0 + 2, NEEDLE * 5.0 + 3, "a red umbrella opens"))
    return out


def questions(n: int) -> list[str]:
    return [f"When does the {THINGS[i % len(THINGS)]} appear near stop {i}?" for i in range(n)]


def ms(fn, reps: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for i in range(reps):
        t0 = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="default")
    mode.add_argument("--full", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from videomem.encoders.text import sentence_embedder
    from videomem.memory.config import MemoryConfig
    from videomem.qa.fit import _merged, cut_view
    from videomem.qa.layout import Span
    from videomem.qa.relevance import EmbeddingCache, Relevance
    from videomem.qa.selection import choose_whole
    from videomem.qa.visual import Visual

    n_q = 200 if args.full else 40
    n_tok, dim = (196, 896) if args.full else (49, 128)
    spans = [Span(i * 5.0, i * 5.0 + 5) for i in range(SLOTS)]
    lines = lines_of(SLOTS)
    qs = questions(n_q + 1)

    t0 = time.perf_counter()
    cache = EmbeddingCache(lambda: sentence_embedder("cpu"))
    cache.embed(["warm up"])  # the model load, apart from the lines
    load_ms = (time.perf_counter() - t0) * 1000
    rel = Relevance(lines, cache)
    t0 = time.perf_counter()
    rel.scores(qs[-1], spans)
    cold_ms = (time.perf_counter() - t0) * 1000

    def score(i: int) -> None:
        s = rel.scores(qs[i], spans)
        assert s is not None
        choose_whole(s, K)

    warm = ms(score, n_q)
    p50 = statistics.median(warm)
    p95 = sorted(warm)[int(0.95 * (len(warm) - 1))]

    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(SLOTS, n_tok, dim, generator=g).half()
    view = Visual(tokens, tuple(spans), torch.ones(SLOTS, dtype=torch.int64), slots=SLOTS)
    cfg = MemoryConfig()
    scores = rel.scores("Is there a red umbrella?", spans)
    reps = 3 if args.full else 5
    cut = statistics.median(ms(lambda i: cut_view(view, K, cfg, scores), reps))
    uniform = statistics.median(ms(lambda i: _merged(view, K, cfg), reps))
    kept = choose_whole(scores, K) if scores is not None else []
    assert kept == [NEEDLE], kept

    print(f"threads {torch.get_num_threads()}; {SLOTS} slots, {len(lines)} lines, {n_q} questions")
    print(f"MiniLM load (once per process)         {load_ms:8.1f} ms")
    print(f"first question of a run (lines embedded){cold_ms:8.1f} ms")
    print(f"scoring per question  p50 {p50:6.2f} ms   p95 {p95:6.2f} ms")
    print(f"p50 / {GOAL_MS:.0f} ms goal                  {p50 / GOAL_MS:8.3f}  (< 1 meets it)")
    print(f"cut to K={K} ({n_tok}x{dim} tokens, {len(kept)} kept whole) {cut:8.1f} ms")
    print(
        f"uniform merge to K={K}                    {uniform:8.1f} ms   ratio {cut / uniform:.2f}"
    )


if __name__ == "__main__":
    main()

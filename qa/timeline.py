"""The text timeline of a video and the prompt a text-only LLM answers from.

VideoChat-Text's idea: describe each segment in text, then let a language model read
the timestamped lines. Lines look like ``00:12–00:18  trolleybus 0.41, street sign 0.22``
(tags) or ``00:12–00:18  a man rides a bicycle`` (dense captions); global captions
go first as a summary. What is said comes in between, by time:
``00:04–00:06  [speech] "Never judge a book by its cover."`` (the video's transcript).

Design decisions:

* **Fitting a context window.** A long timeline is cut to the token budget by
  merging adjacent lines, never by dropping any: the end of a video (often what a
  question is about) always survives. Each step merges the adjacent pair whose merged
  span is shortest (ties: the earliest), so resolution stays even along the video.
  Merged tag lines keep the top-k of their duration-weighted scores (a tag missing
  from one side counts 0 there), so a merged line is no longer than its parts;
  merged free text is joined with " / ". When one line remains and still does not
  fit, the middle of its text is cut (start and end kept).
* Token counts come from the model's tokenizer: the prompt without lines once, then
  each line (plus its newline); the sum is checked against the real rendered prompt
  at the end and merging goes on while it is over.
* **Speech lines are fitted among themselves.** A merge joins a line with the next
  line *of its kind* (speech with speech, what is seen with what is seen), so a quote
  is never glued to a tag list; merged speech keeps every word in order. The merged
  line takes the place of the first, so the timeline stays in start order. When no
  two lines of a kind are left and the prompt is still too long, the longest line's
  middle is cut.
* **Breakpoint questions** (about time t) see the lines that start before t, and the
  line covering t is named as the current moment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from videomem.pipeline.transcript import SpeechSegment
from videomem.qa.tags import parse_tags_text, tags_text

#: what the LLM is told the timeline is (system message)
SYSTEM = (
    "You answer questions about a video. You cannot see it; you get its timeline: "
    "one line per segment, 'start–end  what is seen there'. Tags have a confidence "
    "from 0 to 1. Answer briefly from the timeline only."
)
#: caption kinds that become timeline lines, in the order they are preferred
LINE_KINDS = ("dense", "tags")
#: the kind of a line of the transcript
SPEECH = "speech"
#: how the timeline's heading says what speech lines are, when it has any
SPEECH_NOTE = " (lines marked [speech] quote what is said then)"


@dataclass(frozen=True)
class Line:
    """One timeline line: a span and what is seen in it."""

    start_s: float
    end_s: float
    text: str
    kind: str = "tags"


def clock(seconds: float) -> str:
    """``75.4`` -> ``"01:15"``; ``3725`` -> ``"1:02:05"``."""
    s = max(0, int(round(seconds)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


def span_text(start_s: float, end_s: float) -> str:
    return f"{clock(start_s)}–{clock(end_s)}"


def render_line(line: Line) -> str:
    if line.kind == SPEECH:
        return f'{span_text(line.start_s, line.end_s)}  [speech] "{line.text}"'
    return f"{span_text(line.start_s, line.end_s)}  {line.text}"


def speech_lines(segments: Sequence[SpeechSegment]) -> list[Line]:
    """A transcript's segments as timeline lines (empty ones left out)."""
    return [
        Line(s.start_s, s.end_s, " ".join(s.text.split()), SPEECH)
        for s in segments
        if s.text.strip()
    ]


def lines_from_captions(
    rows: Sequence[dict[str, Any]], speech: Sequence[SpeechSegment] = ()
) -> tuple[list[str], list[Line]]:
    """(global captions, timeline lines in time order) from ``captions`` rows and the
    video's transcript segments (``speech``), interleaved by start time.

    When a video has both dense captions and tags, the dense captions are the
    timeline (tags are the fallback for encoders without a language model)."""
    summary = [str(r["text"]) for r in rows if r["kind"] == "global" and r.get("text")]
    lines = speech_lines(speech)
    for kind in LINE_KINDS:
        picked = [r for r in rows if r["kind"] == kind and r.get("text") is not None]
        if picked:
            lines += [
                Line(float(r["start_s"]), float(r["end_s"]), str(r["text"]), kind) for r in picked
            ]
            break
    # what is seen before what is said when both start together
    return summary, sorted(lines, key=lambda x: (x.start_s, x.kind == SPEECH, x.end_s))


# --------------------------------------------------------------------------- merging


def merge_lines(a: Line, b: Line, k: int = 5) -> Line:
    """Two adjacent lines as one covering both spans."""
    start, end = min(a.start_s, b.start_s), max(a.end_s, b.end_s)
    if a.kind == "tags" and b.kind == "tags":
        wa = max(a.end_s - a.start_s, 1e-3)
        wb = max(b.end_s - b.start_s, 1e-3)
        scores: dict[str, float] = {}
        for tags, w in ((parse_tags_text(a.text), wa), (parse_tags_text(b.text), wb)):
            for name, score in tags:
                scores[name] = scores.get(name, 0.0) + w * score
        best = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        text = tags_text([(n, s / (wa + wb)) for n, s in best])
        return Line(start, end, text, "tags")
    if a.kind == SPEECH and b.kind == SPEECH:  # words in the order they were said
        return Line(start, end, f"{a.text} {b.text}", SPEECH)
    return Line(start, end, f"{a.text} / {b.text}", a.kind if a.kind == b.kind else "dense")


def _pairs(lines: Sequence[Line]) -> list[tuple[int, int]]:
    """(i, j): each line and the next line of the same kind."""
    last: dict[str, int] = {}
    pairs = []
    for j, line in enumerate(lines):
        if line.kind in last:
            pairs.append((last[line.kind], j))
        last[line.kind] = j
    return pairs


def _shortest_pair(lines: Sequence[Line]) -> tuple[int, int] | None:
    """The pair of :func:`_pairs` whose merged span is shortest (ties: the earliest);
    None when no two lines share a kind."""
    pairs = _pairs(lines)
    if not pairs:
        return None
    return min(
        pairs, key=lambda p: (max(lines[p[1]].end_s, lines[p[0]].end_s) - lines[p[0]].start_s, p)
    )


def cut_middle(text: str, keep_chars: int) -> str:
    """``text`` shortened to about ``keep_chars`` characters, its middle replaced by …"""
    if len(text) <= keep_chars:
        return text
    if keep_chars < 2:
        return "…"
    head = (keep_chars - 1) // 2
    return text[:head] + "…" + text[len(text) - (keep_chars - 1 - head) :]


def fit_lines(
    lines: Sequence[Line],
    budget: int,
    count: Callable[[str], int],
    k: int = 5,
) -> list[Line]:
    """Merge lines of a kind until the sum of ``count(rendered line + "\\n")`` is at
    most ``budget`` tokens (see the module docstring). The first line still starts
    where the first given line starts, and the last ends where the last one ends."""
    out = list(lines)
    if not out:
        return out
    cost = [count(render_line(x) + "\n") for x in out]
    while sum(cost) > budget and (pair := _shortest_pair(out)) is not None:
        i, j = pair
        merged = merge_lines(out[i], out[j], k)
        del out[j], cost[j]
        out[i], cost[i] = merged, count(render_line(merged) + "\n")
    # one line of each kind left, still too long: cut the middle of the longest
    full = [x.text for x in out]
    while sum(cost) > budget:
        i = max(range(len(out)), key=lambda x: (len(out[x].text), -x))
        keep = len(out[i].text) * 3 // 4
        if keep < 1:
            break
        out[i] = replace(out[i], text=cut_middle(full[i], keep))
        cost[i] = count(render_line(out[i]) + "\n")
    return out


# --------------------------------------------------------------------------- prompt


@dataclass(frozen=True)
class TimelinePrompt:
    """The chat messages of one question, and how much of the timeline they show."""

    messages: list[dict[str, str]]
    #: lines shown (after merging) and lines the video has
    lines: int
    total_lines: int


def user_message(
    summary: Sequence[str], lines: Sequence[Line], question: str, time_s: float | None
) -> str:
    parts = []
    if summary:
        parts.append("Summary: " + " ".join(summary))
    if lines:
        note = SPEECH_NOTE if any(x.kind == SPEECH for x in lines) else ""
        parts.append(f"Timeline{note}:\n" + "\n".join(render_line(x) for x in lines))
    else:
        parts.append("Timeline: (nothing was recognised)")
    if time_s is not None:
        now = [x for x in lines if x.start_s <= time_s <= x.end_s]
        at = f" ({render_line(now[-1])})" if now else ""
        parts.append(f"The question is about the moment {clock(time_s)}{at}.")
    parts.append(f"Question: {question}")
    return "\n\n".join(parts)


def view_lines(lines: Sequence[Line], time_s: float | None) -> list[Line]:
    """Global: every line; breakpoint at t: the lines that start at or before t."""
    if time_s is None:
        return list(lines)
    return [x for x in lines if x.start_s <= time_s]


def build_prompt(
    summary: Sequence[str],
    lines: Sequence[Line],
    question: str,
    time_s: float | None,
    *,
    count_prompt: Callable[[list[dict[str, str]]], int],
    count_text: Callable[[str], int],
    budget: int | None,
    system: str | None = SYSTEM,
    k: int = 5,
) -> TimelinePrompt:
    """The messages for ``question``, the timeline merged to fit ``budget`` tokens of
    rendered prompt (None: no limit). ``count_prompt`` counts a rendered chat prompt,
    ``count_text`` a piece of text."""

    def messages(shown: Sequence[Line]) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": system}] if system else []
        return [*msgs, {"role": "user", "content": user_message(summary, shown, question, time_s)}]

    view = view_lines(lines, time_s)
    if budget is None:
        return TimelinePrompt(messages(view), len(view), len(lines))
    fixed = count_prompt(messages([]))
    shown = fit_lines(view, budget - fixed, count_text, k)
    # the per-line sum is an estimate (tokens can merge across newlines): verify
    while len(shown) > 1 and count_prompt(messages(shown)) > budget:
        shown = fit_lines(
            shown, sum(count_text(render_line(x) + "\n") for x in shown) - 1, count_text, k
        )
    return TimelinePrompt(messages(shown), len(shown), len(lines))

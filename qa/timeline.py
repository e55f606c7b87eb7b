"""The text timeline of a video and the prompt a text-only LLM answers from.

VideoChat-Text's idea: describe each segment in text, then let a language model read
the timestamped lines. Lines look like ``00:12–00:18  trolleybus 0.41, street sign 0.22``
(tags) or ``00:12–00:18  a man rides a bicycle`` (dense captions); global captions
go first as a summary. A video's transcript adds what is said, interleaved by time:
``00:04–00:06  [speech] "never judge a book by its cover"`` (VideoChat-Text's audio
stream).

Design decisions:

* **Fitting a context window.** A long timeline is cut to the token budget by
  merging adjacent lines, never by dropping any: the end of a video (often what a
  question is about) always survives. Each step merges the adjacent pair whose merged
  span is shortest (ties: the earliest), so resolution stays even along the video.
  Merged tag lines keep the top-k of their duration-weighted scores (a tag missing
  from one side counts 0 there), so a merged line is no longer than its parts;
  merged free text is joined with " / ". When one line remains and still does not
  fit, the middle of its text is cut (start and end kept).
* **Question-aware fitting** (:func:`fit_relevant`): when the lines must be merged
  and the question's relevance to each line is known (``qa.relevance``: the line's
  text against the question with the sentence encoder), the lines clearly most
  relevant stay whole (``qa.selection.choose_whole`` with K = the lines the uniform
  fit ends with) and only the lines between them merge, by the same shortest-span
  rule; if that cannot reach the budget the least relevant kept line is given up
  first. A question about one short moment so keeps that moment's line word for word.
* Token counts come from the model's tokenizer: the prompt without lines once, then
  each line (plus its newline); the sum is checked against the real rendered prompt
  at the end and merging goes on while it is over.
* **Breakpoint questions** (about time t) see the lines that start before t, and the
  line covering t is named as the current moment; they hear only speech said by t
  (as ``--subtitles`` does).
* **Speech** lines are one per transcript segment, kind ``speech``, sorted into the
  picture lines by start time (a picture line first on a tie). A line carries its
  picture and its speech apart (``Line.speech``): merging merges the pictures as above
  (tags stay top-k, so they do not grow) and joins the words said, in order, into one
  quote after the picture (``00:00–00:09  dog 0.52 [speech] "…"``). Fitting a small
  context so spends its budget on what was said before what was seen, and never drops
  either, nor the end. Only a finished (``done``) transcript adds lines: "no audio"
  and failures add none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from videomem.pipeline.transcript import Transcript
from videomem.qa.selection import choose_whole
from videomem.qa.subtitles import heard
from videomem.qa.tags import parse_tags_text, tag_names, tags_text

if TYPE_CHECKING:
    import torch

#: relevance of each line to the question (None: nothing can score)
LineScores = Callable[[Sequence["Line"]], "torch.Tensor | None"]

#: what the LLM is told the timeline is (system message)
SYSTEM = (
    "You answer questions about a video. You cannot see it; you get its timeline: "
    "one line per segment, 'start–end  what is seen there'. Tags have a confidence "
    "from 0 to 1. Answer briefly from the timeline only."
)
#: added to SYSTEM when the timeline holds speech
SPEECH_NOTE = " Lines marked [speech] quote what is said in that span."
#: what starts the text of a speech line
SPEECH_TAG = "[speech]"
#: caption kinds that become timeline lines, in the order they are preferred
LINE_KINDS = ("dense", "tags")


@dataclass(frozen=True)
class Line:
    """One timeline line: a span, what is seen in it, and what is said in it."""

    start_s: float
    end_s: float
    #: what is seen (tags or a caption); empty on a speech-only line
    text: str
    #: "tags" or "dense" (a picture line, maybe with speech merged in) or "speech"
    kind: str = "tags"
    #: the words said in the span, None when nothing is
    speech: str | None = None

    @property
    def content(self) -> str:
        """What the line shows after its span: the picture, then the quoted speech."""
        quote = speech_text(self.speech) if self.speech is not None else ""
        return f"{self.text} {quote}" if self.text and quote else self.text or quote


def clock(seconds: float) -> str:
    """``75.4`` -> ``"01:15"``; ``3725`` -> ``"1:02:05"``."""
    s = max(0, int(round(seconds)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


def span_text(start_s: float, end_s: float) -> str:
    return f"{clock(start_s)}–{clock(end_s)}"


def render_line(line: Line) -> str:
    return f"{span_text(line.start_s, line.end_s)}  {line.content}"


def lines_from_captions(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[Line]]:
    """(global captions, timeline lines in time order) from ``captions`` rows.

    When a video has both dense captions and tags, the dense captions are the
    timeline (tags are the fallback for encoders without a language model)."""
    summary = [str(r["text"]) for r in rows if r["kind"] == "global" and r.get("text")]
    for kind in LINE_KINDS:
        picked = [r for r in rows if r["kind"] == kind and r.get("text") is not None]
        if picked:
            lines = [
                Line(float(r["start_s"]), float(r["end_s"]), str(r["text"]), kind) for r in picked
            ]
            return summary, sorted(lines, key=lambda x: (x.start_s, x.end_s))
    return summary, []


def speech_text(said: str) -> str:
    """What a speech line shows: ``[speech] "the words"``."""
    return f'{SPEECH_TAG} "{said}"'


def lines_from_transcript(transcript: Transcript | None, time_s: float | None = None) -> list[Line]:
    """One speech line per segment of a finished transcript (none for "no audio",
    a failure, or no transcript); at a breakpoint ``time_s`` only what was said by
    then (:func:`videomem.qa.subtitles.heard`: a sentence still being said keeps the
    words already said when word times were stored)."""
    return [
        Line(s.start_s, s.end_s, "", "speech", s.text.strip())
        for s in heard(transcript, time_s)
        if s.text.strip()
    ]


def interleave(lines: Sequence[Line], speech: Sequence[Line]) -> list[Line]:
    """Picture lines and speech lines in one list by start time (picture first on a tie)."""
    return sorted([*lines, *speech], key=lambda x: (x.start_s, x.kind == "speech", x.end_s))


def line_text(line: Line) -> str:
    """What a line says, for comparing with a question: tag labels without their
    scores, the caption, and the words said."""
    seen = tag_names(line.text) if line.kind == "tags" else line.text
    return " ".join(x for x in (seen, line.speech or "") if x)


def has_speech(lines: Sequence[Line]) -> bool:
    return any(x.speech is not None for x in lines)


# --------------------------------------------------------------------------- merging


def merge_lines(a: Line, b: Line, k: int = 5) -> Line:
    """Two adjacent lines as one covering both spans: their pictures merged (see
    :func:`merge_pictures`), their speech joined."""
    start, end = min(a.start_s, b.start_s), max(a.end_s, b.end_s)
    spoken = [x.speech for x in (a, b) if x.speech is not None]
    speech = " ".join(spoken) if spoken else None
    pictures = [x for x in (a, b) if x.kind != "speech"]
    if not pictures:
        return Line(start, end, "", "speech", speech)
    if len(pictures) == 1:
        return Line(start, end, pictures[0].text, pictures[0].kind, speech)
    return replace(merge_pictures(a, b, k), start_s=start, end_s=end, speech=speech)


def merge_pictures(a: Line, b: Line, k: int = 5) -> Line:
    """Two picture lines as one: tags keep the top-k of their duration-weighted scores,
    other text is joined with " / "."""
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
    return Line(start, end, f"{a.text} / {b.text}", a.kind if a.kind == b.kind else "dense")


def _shortest_pair(lines: Sequence[Line], among: Sequence[int] | None = None) -> int:
    """Index i of the adjacent pair (i, i+1) whose merged span is shortest (ties: the
    earliest), of the pairs ``among`` (default: all)."""
    return min(
        range(len(lines) - 1) if among is None else among,
        key=lambda i: (max(lines[i + 1].end_s, lines[i].end_s) - lines[i].start_s, i),
    )


def _merge_pair(
    out: list[Line], cost: list[int], i: int, count: Callable[[str], int], k: int
) -> None:
    """Merge lines i and i+1 of ``out`` in place, and their token counts in ``cost``."""
    merged = merge_lines(out[i], out[i + 1], k)
    out[i : i + 2] = [merged]
    cost[i : i + 2] = [count(render_line(merged) + "\n")]


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
    """Merge adjacent lines until the sum of ``count(rendered line + "\\n")`` is at
    most ``budget`` tokens (see the module docstring). The first line still starts
    where the first given line starts, and the last ends where the last one ends."""
    out = list(lines)
    if not out:
        return out
    cost = [count(render_line(x) + "\n") for x in out]
    while sum(cost) > budget and len(out) > 1:
        _merge_pair(out, cost, _shortest_pair(out), count, k)
    if sum(cost) > budget:  # one line left, still too long: cut its middle
        whole = out[0]
        line = Line(whole.start_s, whole.end_s, whole.content, whole.kind)
        keep = len(line.text)
        while (
            keep > 1
            and count(render_line(replace(line, text=cut_middle(line.text, keep))) + "\n") > budget
        ):
            keep = keep * 3 // 4
        out = [replace(line, text=cut_middle(line.text, keep))]
    return out


def fit_relevant(
    lines: Sequence[Line],
    budget: int,
    count: Callable[[str], int],
    scores: LineScores,
    k: int = 5,
) -> tuple[list[Line], list[int] | None]:
    """:func:`fit_lines`, but the lines most relevant to the question (``scores`` of
    the lines, asked only when lines must merge) stay whole (see the module
    docstring). Returns the lines and the indices of ``lines`` kept whole (None: no
    merge was needed, nothing could score, or none stood out: the uniform fit)."""
    uniform = fit_lines(lines, budget, count, k)
    if len(uniform) >= len(lines):
        return uniform, None
    got = scores(lines)
    kept = [] if got is None else choose_whole(got, len(uniform))
    if got is None or not kept:
        return uniform, None
    given_up = sorted(kept, key=lambda i: (-float(got[i]), i))  # least relevant last
    whole = set(kept)
    out = list(lines)
    origin = list(range(len(lines)))  # the given line a line still is, or -1: merged
    cost = [count(render_line(x) + "\n") for x in out]
    while sum(cost) > budget and len(out) > 1:
        free = [i for i in range(len(out) - 1) if not {origin[i], origin[i + 1]} & whole]
        if not free:
            whole.discard(given_up.pop())
            continue
        i = _shortest_pair(out, free)
        _merge_pair(out, cost, i, count, k)
        origin[i : i + 2] = [-1]
    if sum(cost) > budget:  # one line left: the uniform fit cuts its middle
        return uniform, None
    left = sorted(whole & set(origin))
    return out, left or None


# --------------------------------------------------------------------------- prompt


@dataclass(frozen=True)
class TimelinePrompt:
    """The chat messages of one question, and how much of the timeline they show."""

    messages: list[dict[str, str]]
    #: lines shown (after merging) and lines the video has
    lines: int
    total_lines: int
    #: lines (indices into the question's view) kept whole by a question-aware fit
    kept_lines: list[int] | None = None


def user_message(
    summary: Sequence[str], lines: Sequence[Line], question: str, time_s: float | None
) -> str:
    parts = []
    if summary:
        parts.append("Summary: " + " ".join(summary))
    if lines:
        parts.append("Timeline:\n" + "\n".join(render_line(x) for x in lines))
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
    scores: LineScores | None = None,
) -> TimelinePrompt:
    """The messages for ``question``, the timeline merged to fit ``budget`` tokens of
    rendered prompt (None: no limit). ``count_prompt`` counts a rendered chat prompt,
    ``count_text`` a piece of text. ``scores``: each line's relevance to the question
    (a question-aware fit, :func:`fit_relevant`; None: the uniform one)."""

    def messages(shown: Sequence[Line]) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": system}] if system else []
        return [*msgs, {"role": "user", "content": user_message(summary, shown, question, time_s)}]

    view = view_lines(lines, time_s)
    if budget is None:
        return TimelinePrompt(messages(view), len(view), len(lines))
    fixed = count_prompt(messages([]))
    if scores is not None:
        prompt = _build_relevant(view, budget, fixed, messages, count_prompt, count_text, k, scores)
        return replace(prompt, total_lines=len(lines))
    shown = fit_lines(view, budget - fixed, count_text, k)
    # the per-line sum is an estimate (tokens can merge across newlines): verify
    while len(shown) > 1 and count_prompt(messages(shown)) > budget:
        shown = fit_lines(
            shown, sum(count_text(render_line(x) + "\n") for x in shown) - 1, count_text, k
        )
    return TimelinePrompt(messages(shown), len(shown), len(lines))


def _build_relevant(
    view: list[Line],
    budget: int,
    fixed: int,
    messages: Callable[[Sequence[Line]], list[dict[str, str]]],
    count_prompt: Callable[[list[dict[str, str]]], int],
    count_text: Callable[[str], int],
    k: int,
    scores: LineScores,
) -> TimelinePrompt:
    """:func:`build_prompt` with :func:`fit_relevant`, the scores asked once; the
    rendered prompt is verified as there, fitting the view again to a smaller sum."""
    memo: dict[str, torch.Tensor | None] = {}

    def once(lines: Sequence[Line]) -> torch.Tensor | None:
        if "s" not in memo:
            memo["s"] = scores(lines)
        return memo["s"]

    shown, kept = fit_relevant(view, budget - fixed, count_text, once, k)
    while len(shown) > 1 and count_prompt(messages(shown)) > budget:
        less = sum(count_text(render_line(x) + "\n") for x in shown) - 1
        shown, kept = fit_relevant(view, less, count_text, once, k)
    return TimelinePrompt(messages(shown), len(shown), len(view), kept)

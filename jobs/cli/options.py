"""What every command shares: its option sets, defined once, and how it reports.

Design decisions:

* A command's flags are the fields of a frozen dataclass (its *options*), whose
  defaults are the ``typer.Option``/``typer.Argument`` declarations. Sets of flags
  several commands take (the store and its storage options, the generation flags, the
  executor, the device) are base classes defined here once; a command's options class
  inherits the sets it takes and adds its own flags. :func:`command` turns a function
  of one options object into the flat signature Typer reads, and builds the object
  from the parsed flags; so the command function only calls the library and prints.
* Each options class turns its flags into the library's typed arguments (a job, a
  request, settings); the checks that tie values together live in those (they raise
  :class:`ConfigError`), and :func:`usage_errors` shows any ``VideomemError`` as
  ``error: …`` with exit status 2.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, get_type_hints

import typer
from videomem.pipeline.errors import ConfigError, VideomemError
from videomem.qa.types import GenerationSettings


def command(fn: Callable[[Any], None]) -> Callable[..., None]:
    """``fn(options)`` as a Typer command: the options class's fields become the
    command's parameters (arguments in field order), and ``fn`` gets the object."""
    (name, cls), *extra = get_type_hints(fn).items()
    if extra[:1] != [("return", type(None))] or not isinstance(cls, type):
        raise TypeError(f"{fn.__name__}: a command takes one options dataclass")
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{fn.__name__}: {cls.__name__} is not a dataclass")
    hints = get_type_hints(cls)
    params = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                          annotation=hints[f.name])
        for f in dataclasses.fields(cls)
    ]  # fmt: skip

    @functools.wraps(fn)
    def run(**flags: Any) -> None:
        fn(cls(**flags))

    run.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
    return run


@contextmanager
def usage_errors() -> Iterator[None]:
    """A ``VideomemError`` inside: ``error: …`` on stderr, exit status 2."""
    try:
        yield
    except VideomemError as e:
        raise fail_usage(str(e)) from None


def fail_usage(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def print_summary(summary: Any, as_json: bool) -> None:
    """A bulk job's summary: JSON, or its text line and up to 20 failures."""
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        typer.echo(summary.text())
        for f in summary.failures[:20]:
            typer.echo(f"  failed: {f.splitlines()[0]}")


def key_values(items: list[str], what: str) -> dict[str, str]:
    """KEY=VALUE strings -> dict of strings."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} {item!r} is not KEY=VALUE")
        out[key] = value
    return out


def json_values(items: list[str], what: str) -> dict[str, object]:
    """KEY=VALUE strings -> dict; values are JSON when they parse (numbers, true,
    null), else plain strings."""
    out: dict[str, object] = {}
    for key, raw in key_values(items, what).items():
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


# --------------------------------------------------------------------------- option sets

DEVICE_HELP = "cuda, cpu, cuda:1 … (default: CUDA if present)."
DTYPE_HELP = "float32, bfloat16, float16 (default by device)."
STORAGE_HELP = (
    "LanceDB storage option KEY=VALUE for an object-store URI, repeatable "
    "(aws_endpoint, aws_region, aws_access_key_id, allow_http …; AWS_* env vars work too)."
)


@dataclasses.dataclass(frozen=True)
class StoreOptions:
    """The store a command reads or writes."""

    store: str = typer.Option("videomem-store", help="Store directory or LanceDB URI.")
    storage_option: list[str] = typer.Option([], "--storage-option", help=STORAGE_HELP)

    @property
    def storage_options(self) -> dict[str, str]:
        """LanceDB storage options (all strings)."""
        return key_values(self.storage_option, "storage option")

    def where(self) -> dict[str, Any]:
        """The ``store``/``storage_options`` arguments of a library job."""
        return {"store": self.store, "storage_options": self.storage_options}


@dataclasses.dataclass(frozen=True)
class ExecutorOptions:
    """Where a bulk job's workers run."""

    executor: str = typer.Option("auto", help="auto, local or ray.")
    workers: int = typer.Option(1, help="Parallel workers (Ray actors).")
    ray_address: str | None = typer.Option(None, help="Ray cluster address (or RAY_ADDRESS).")

    def execution(self) -> dict[str, Any]:
        return {"executor": self.executor, "workers": self.workers, "ray_address": self.ray_address}


@dataclasses.dataclass(frozen=True)
class ModelDeviceOptions:
    """Where a model runs."""

    device: str | None = typer.Option(None, help=DEVICE_HELP)
    dtype: str | None = typer.Option(None, help=DTYPE_HELP)


@dataclasses.dataclass(frozen=True)
class GenerationOptions(ModelDeviceOptions):
    """How a VLM or text LLM generates (``ask``, ``qa``, ``caption``)."""

    model: str | None = typer.Option(
        None,
        help="Checkpoint that answers (default: the one that indexed the video; another "
        "is refused unless its encoder fingerprint matches).",
    )
    llm: str | None = typer.Option(
        None,
        "--llm",
        help="Answer from the video's text timeline (tags/captions) with this text LLM "
        "(hub id, directory, or 'smollm2') instead of the memory's VLM.",
    )
    max_new_tokens: int = typer.Option(64, help="Most tokens generated per answer.")
    temperature: float | None = typer.Option(
        None, help="Sample with this temperature (default: greedy)."
    )
    top_p: float | None = typer.Option(
        None, help="Sample with this nucleus mass (default: greedy)."
    )
    seed: int | None = typer.Option(None, help="Sampler seed.")
    system_prompt: str | None = typer.Option(None, help="System prompt.")
    prompt_style: str = typer.Option(
        "timestamped", help="timestamped (slot spans as text) or native (the processor's layout)."
    )
    max_context: int | None = typer.Option(
        None, help="Context budget in tokens (default: the LM's); past it, slots are merged to K."
    )
    subtitles: bool = typer.Option(
        False,
        "--subtitles",
        help="Put the video's transcript beside the slots it is said in (VLM QA; at a "
        "time t only what was said by t). Needs `videomem transcribe` first.",
    )
    context: str = typer.Option(
        "relevant",
        help="When the memory must be cut to fit the context: relevant (the slots or "
        "timeline lines most relevant to the question stay whole, scored from the "
        "video's tags, captions and speech) or uniform (every slot merged alike).",
    )

    def settings(self) -> GenerationSettings:
        sample = self.temperature is not None or self.top_p is not None
        return GenerationSettings(
            max_new_tokens=self.max_new_tokens,
            do_sample=sample,
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            seed=self.seed,
            system_prompt=self.system_prompt,
            prompt_style=self.prompt_style,  # type: ignore[arg-type]
            max_context=self.max_context,
            subtitles=self.subtitles,
            context=self.context,  # type: ignore[arg-type]
        )

    def answering(self) -> dict[str, Any]:
        """The model, device and settings arguments of a library QA job or request."""
        model = {"model": self.model, "llm": self.llm, "device": self.device}
        return {**model, "dtype": self.dtype, "settings": self.settings()}


@dataclasses.dataclass(frozen=True)
class ASROptions:
    """What the speech recogniser runs (``transcribe``, ``index --speech``)."""

    asr_model: str = typer.Option(
        "whisper-base",
        help="Speech model: whisper-base (offline, from its PyPI packages), a faster-whisper "
        "id (large-v3, distil-large-v3; needs the hub or its cache) or a CTranslate2 directory.",
    )
    language: str | None = typer.Option(
        None, help="Spoken language as an ISO 639-1 code (en, fr …); default: detected."
    )
    word_times: bool = typer.Option(
        False, "--word-times", help="Store each word with its times in the transcript."
    )

    def asr(self, device: str | None) -> Any:
        """The :class:`~videomem.encoders.asr.ASRConfig` (``device`` None: auto)."""
        from videomem.encoders.asr import ASRConfig

        return ASRConfig(
            model=self.asr_model, language=self.language, word_timestamps=self.word_times,
            device=device or "auto",
        )  # fmt: skip


def json_flag(help: str = "Print the summary as JSON.") -> Any:
    return typer.Option(False, "--json", help=help)

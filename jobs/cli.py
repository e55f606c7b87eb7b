"""The ``videomem`` command line.

Commands only build config objects and hand them to library code (``pipeline``,
``memory``, ``jobs.runner`` …); nothing here holds algorithm logic, so everything a
command does is importable and testable without the CLI.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="videomem",
    help="Index video corpora into compact long-term memories and query them.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """videomem: index video corpora into compact long-term memories and query them."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("videomem")
    except PackageNotFoundError:  # running from a source tree without install
        return "0+unknown"


@app.command()
def version() -> None:
    """Print the installed videomem version."""
    typer.echo(f"videomem {_version()}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()

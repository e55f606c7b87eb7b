"""``videomem serve``: the local web app and JSON API over a store."""

from __future__ import annotations

import dataclasses

import typer
from videomem.jobs.cli.options import DEVICE_HELP, DTYPE_HELP, StoreOptions, command, usage_errors
from videomem.jobs.serve import ServeConfig


@dataclasses.dataclass(frozen=True)
class ServeOptions(StoreOptions):
    host: str = typer.Option("127.0.0.1", help="Bind address (anything but loopback: no login).")
    port: int = typer.Option(8321, help="Port (0: a free one).")
    model: str | None = typer.Option(None, help="VLM that answers (default: each video's own).")
    llm: str | None = typer.Option(
        None, "--llm", help="Answer from the text timeline with this text LLM."
    )
    device: str | None = typer.Option(None, help=DEVICE_HELP)
    dtype: str | None = typer.Option(None, help=DTYPE_HELP)
    record_answers: bool = typer.Option(
        False, "--record-answers", help="Write answers of the ask form to the store."
    )

    def config(self) -> ServeConfig:
        return ServeConfig(
            host=self.host, port=self.port, model=self.model, llm=self.llm, device=self.device,
            dtype=self.dtype, record_answers=self.record_answers, **self.where(),
        )  # fmt: skip


@command
def serve(o: ServeOptions) -> None:
    """Serve the store as a local web app and JSON API (prints its URL)."""
    from videomem.jobs import api

    with usage_errors():
        config = o.config()
        if not config.loopback:
            typer.echo(
                f"warning: serving on {config.host}: anyone who reaches it reads the store "
                "(no login)",
                err=True,
            )
        api.serve(config, announce=lambda url: typer.echo(f"videomem serve: {url}"))

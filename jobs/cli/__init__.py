"""The ``videomem`` command line: a thin layer over :mod:`videomem.jobs.api`.

Each command parses its flags (:mod:`videomem.jobs.cli.options`), calls one library
function and prints the result; the commands are registered in one place,
:func:`videomem.jobs.cli.app.register`.
"""

from videomem.jobs.cli.app import app, main

__all__ = ["app", "main"]

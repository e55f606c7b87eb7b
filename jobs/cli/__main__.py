"""``python -m videomem.jobs.cli`` runs the ``videomem`` command line."""

from videomem.jobs.cli.app import main

main()

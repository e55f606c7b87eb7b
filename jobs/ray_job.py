"""Entry point for Ray cluster jobs, one per stage::

    ray job submit --address http://HEAD:8265 -- \
        python -m videomem.jobs.ray_job index /data/videos --store s3://bucket/store --model ID

``python -m videomem.jobs.ray_job STAGE ARGS…`` is ``videomem STAGE ARGS…`` with the
stage's cluster defaults (the Ray executor) added unless given: the same flags, parsed
by the same command, calling the same library function (:mod:`videomem.jobs.api`). Under ``ray job submit``
the driver runs on the cluster with ``RAY_ADDRESS`` set, so ``ray.init()`` joins that
cluster and the actors spread over its nodes (``--workers N``); the driver stays the
single writer of the store. The video paths and the store must be reachable from every
node (a shared file system or object storage).
"""

from __future__ import annotations

import sys

#: stage -> the arguments it gets on a cluster unless the user gave that option
#: (a new stage is one line here)
STAGES: dict[str, list[str]] = {
    "index": ["--executor", "ray"],
    "qa": ["--executor", "ray"],
    "caption": ["--executor", "ray"],
    "transcribe": ["--executor", "ray"],
}


def _given(args: list[str], option: str) -> bool:
    return any(a == option or a.startswith(option + "=") for a in args)


def main(argv: list[str] | None = None) -> None:
    from videomem.jobs.cli import app

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in STAGES:
        stages = "|".join(STAGES)
        print(
            f"usage: python -m videomem.jobs.ray_job {{{stages}}} ARGS…  "
            f"(the arguments of `videomem {{{stages}}}`)",
            file=sys.stderr,
        )
        raise SystemExit(0 if args[:1] in (["-h"], ["--help"]) else 2)
    stage, rest = args[0], args[1:]
    defaults = STAGES[stage]
    for option, value in zip(defaults[::2], defaults[1::2], strict=True):
        if not _given(rest, option):
            rest += [option, value]
    app([stage, *rest], prog_name=f"videomem.jobs.ray_job {stage}")


if __name__ == "__main__":
    main()

"""Entry point for a Ray cluster job::

    ray job submit --address http://HEAD:8265 -- \
        python -m videomem.jobs.ray_job /data/videos --store s3://bucket/store --model ID

It is ``videomem index`` with the Ray executor: under ``ray job submit`` the driver
runs on the cluster with ``RAY_ADDRESS`` set, so ``ray.init()`` joins that cluster and
the actors spread over its nodes (``--workers N``). The video paths and the store must
be reachable from every node (shared file system or object storage).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    from videomem.jobs.cli import app

    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["index"]:
        args = args[1:]
    if not any(a == "--executor" or a.startswith("--executor=") for a in args):
        args += ["--executor", "ray"]
    app(["index", *args], prog_name="videomem.jobs.ray_job")


if __name__ == "__main__":
    main()

"""One execution machinery for every stage: a step run over a stream of items.

Design decisions:

* A stage is a :class:`StepSpec`: a small picklable description sent to every worker,
  whose ``build()`` loads the model once (the :class:`Step`). ``Step.run(item, context,
  progress)`` turns one item into one outcome and never raises for a bad item (errors
  are data). Index, QA, caption and tag jobs are thin drivers on top of this.
* The same spec runs under a :class:`LocalExecutor` (in-process; tests, one worker) and
  a :class:`RayExecutor` (Ray actors, one model each). Executors only *compute*: they
  yield batches of outcomes to the driver, which is the single committer of the store.
* Bounded work in flight: each worker holds ``spec.concurrency`` items (one running,
  the rest being prepared — the index step probes and decodes the next video while
  the current one encodes), and the stream of items is consumed lazily, so a
  million-file job starts at once and never lists everything in memory.
* Faults (Ray): a worker that dies (OOM kill, lost node, a poison item) is replaced by
  a new actor; each item that was on it is sent to a live worker once more, and is
  recorded as failed (not retryable) once it was on ``max_attempts`` workers that died.
  When no worker can be started at all, the job fails with a clear error. Actors are
  created with ``max_restarts=0``: the executor replaces them itself, so no item is
  ever sent to an actor that is "restarting".
* Live progress from Ray workers: steps report work units (frames, questions) through
  a small progress actor that the driver drains while it waits, so progress moves while
  a long item runs, not only when it ends.
* Ray is imported only inside :class:`RayExecutor`; the local path never pays for it.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal, Protocol

from videomem.pipeline.errors import ConfigError, VideomemError

log = logging.getLogger(__name__)

#: called by a step with the number of work units (frames, questions) just done
ProgressFn = Callable[[int], None]
ExecutorName = Literal["auto", "local", "ray"]


class WorkerError(VideomemError):
    """No worker could be started (the model cannot be loaded, no resources …)."""


class Step(Protocol):
    """A stage's work, loaded once per worker."""

    def info(self) -> Any:
        """What the driver needs to know after loading (e.g. the encoder fingerprint).
        Equal on every worker of a job."""
        ...

    def run(self, item: Any, context: Any, progress: ProgressFn | None) -> Any:
        """One item -> one outcome; a bad item is a failed outcome, never an exception."""
        ...


class StepSpec(Protocol):
    """A picklable description of a step, sent to every worker."""

    #: items one worker holds at once (one running, the rest being prepared)
    concurrency: int

    def build(self) -> Step:
        """Load the model and return the step (runs once inside each worker)."""
        ...

    def lost(self, item: Any, context: Any, error: str, retryable: bool) -> Any:
        """The failed outcome of an item whose worker died or broke."""
        ...


class Executor(Protocol):
    def start(self) -> Any:
        """Start the workers; returns the steps' ``info()``."""
        ...

    def run(
        self, items: Iterable[Any], context: Any = None, progress: ProgressFn | None = None
    ) -> Iterator[list[Any]]:
        """Outcomes of ``items``, in batches of those that finished together."""
        ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- local


class LocalExecutor:
    """One in-process worker; ``spec.concurrency`` items in flight on a thread pool,
    outcomes in the order of the items."""

    def __init__(self, spec: StepSpec) -> None:
        self.spec = spec
        self._step: Step | None = None

    def start(self) -> Any:
        self._step = self.spec.build()
        return self._step.info()

    def run(
        self, items: Iterable[Any], context: Any = None, progress: ProgressFn | None = None
    ) -> Iterator[list[Any]]:
        step = self._step
        if step is None:
            raise RuntimeError("LocalExecutor.start() first")
        todo = iter(items)
        width = max(1, self.spec.concurrency)
        with ThreadPoolExecutor(width, thread_name_prefix="videomem-step") as pool:
            running: deque[Future[Any]] = deque(
                pool.submit(step.run, item, context, progress)
                for item in itertools.islice(todo, width)
            )
            try:
                while running:
                    out = running.popleft().result()
                    nxt = next(todo, None)
                    if nxt is not None:
                        running.append(pool.submit(step.run, nxt, context, progress))
                    yield [out]
            finally:
                for fut in running:  # consumer stopped early: start nothing new
                    fut.cancel()

    def close(self) -> None:
        self._step = None


# --------------------------------------------------------------------------- Ray


class _StepActor:
    """The Ray actor around one step (one model per actor)."""

    def __init__(self, spec: StepSpec) -> None:
        self.step = spec.build()

    def info(self) -> Any:
        return self.step.info()

    def pid(self) -> int:
        return os.getpid()

    def run(self, item: Any, context: Any, progress: Any = None) -> Any:
        report = None
        if progress is not None:

            def report(n: int) -> None:
                progress.add.remote(n)  # fire and forget: never slows the step

        return self.step.run(item, context, report)


class _ProgressActor:
    """Work units reported by the steps since the driver last asked."""

    def __init__(self) -> None:
        self.n = 0

    def add(self, n: int) -> None:
        self.n += n

    def take(self) -> int:
        n, self.n = self.n, 0
        return n


class RayExecutor:
    """``workers`` Ray actors, each with its own step; the driver feeds them.

    ``address`` None starts (or joins, under ``ray job submit``: RAY_ADDRESS) a Ray
    instance. Each actor asks for ``num_gpus_per_worker`` GPUs: by default 1 when the
    cluster has GPUs and ``wants_gpu`` (the step's device is not the CPU).
    """

    #: seconds between progress polls while waiting for outcomes
    POLL_S = 0.5

    def __init__(
        self,
        spec: StepSpec,
        workers: int = 1,
        address: str | None = None,
        *,
        num_cpus_per_worker: float = 1.0,
        num_gpus_per_worker: float | None = None,
        wants_gpu: bool = True,
        max_attempts: int = 2,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if workers < 1:
            raise ConfigError("workers must be >= 1")
        if max_attempts < 1:
            raise ConfigError("max_attempts must be >= 1")
        self.spec = spec
        self.workers = workers
        self.address = address
        self.num_cpus_per_worker = num_cpus_per_worker
        self.num_gpus_per_worker = num_gpus_per_worker
        self.wants_gpu = wants_gpu
        self.max_attempts = max_attempts
        self.init_kwargs = init_kwargs or {}
        self._actors: list[Any] = []
        self._actor_cls: Any = None
        self._gpus = 0.0
        self._owns_ray = False
        self._info: Any = None
        self._pids: dict[Any, int] = {}
        #: actors started over the job's life, replacements included
        self.started = 0
        #: actors that died while running items
        self.died = 0

    # ------------------------------------------------------------------ actors

    def start(self) -> Any:
        import ray

        if not ray.is_initialized():
            ray.init(
                address=self.address,
                include_dashboard=False,
                ignore_reinit_error=True,
                log_to_driver=True,
                **self.init_kwargs,
            )
            self._owns_ray = True
        gpus = self.num_gpus_per_worker
        if gpus is None:
            has_gpu = ray.cluster_resources().get("GPU", 0) >= 1
            gpus = 1.0 if self.wants_gpu and has_gpu else 0.0
        self._gpus = gpus
        self._actor_cls = ray.remote(_StepActor).options(  # type: ignore[attr-defined]
            num_cpus=self.num_cpus_per_worker,
            num_gpus=gpus,
            max_restarts=0,  # replaced by run(), never "restarting" under our feet
            max_task_retries=0,
            max_concurrency=max(1, self.spec.concurrency),
        )
        actors = [self._actor_cls.remote(self.spec) for _ in range(self.workers)]
        self.started += len(actors)
        infos, errors = [], []
        for actor in actors:
            try:
                infos.append(ray.get(actor.info.remote()))
                self._pids[actor] = ray.get(actor.pid.remote())
                self._actors.append(actor)
            except Exception as e:
                errors.append(_ray_cause(e))
                ray.kill(actor)
        if not self._actors:
            self.close()
            raise WorkerError(f"no worker could be started: {errors[0] if errors else '?'}")
        if errors:
            log.warning(
                "%d of %d workers failed to start: %s", len(errors), self.workers, errors[0]
            )
        if any(i != infos[0] for i in infos[1:]):
            self.close()
            raise WorkerError(
                "workers loaded different models (mixed GPU/CPU nodes give different "
                f"dtypes?): {infos}; pass --dtype/--device"
            )
        self._info = infos[0]
        return self._info

    def _replace(self, dead: Any) -> Any | None:
        """A new actor in place of ``dead``; None when it cannot start (the job goes on
        with the others, and fails when none is left)."""
        import ray

        with contextlib.suppress(Exception):
            ray.kill(dead)
        self._actors = [a for a in self._actors if a is not dead]
        self._pids.pop(dead, None)
        actor = self._actor_cls.remote(self.spec)
        self.started += 1
        try:
            info = ray.get(actor.info.remote())
            self._pids[actor] = ray.get(actor.pid.remote())
        except Exception as e:
            log.error("a replacement worker failed to start: %s", _ray_cause(e))
            with contextlib.suppress(Exception):
                ray.kill(actor)
            return None
        if info != self._info:
            ray.kill(actor)
            log.error("a replacement worker loaded a different model: %s", info)
            return None
        self._actors.append(actor)
        return actor

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (for diagnostics and fault tests), known
        without asking the actors, whose slots may all be busy."""
        return [self._pids[a] for a in self._actors if a in self._pids]

    # ------------------------------------------------------------------ run

    def run(
        self, items: Iterable[Any], context: Any = None, progress: ProgressFn | None = None
    ) -> Iterator[list[Any]]:
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError

        if not self._actors:
            raise RuntimeError("RayExecutor.start() first")
        ctx_ref = ray.put(context)
        # Any: Ray's ActorHandle[T] types an actor's methods as plain methods, without .remote
        counter: Any = None
        if progress is not None:
            counter = ray.remote(_ProgressActor).options(num_cpus=0).remote()  # type: ignore[attr-defined]
        todo = iter(items)
        retry: deque[tuple[int, Any]] = deque()  # (item number, item) to send again
        kills: dict[int, int] = {}  # item number -> workers that died while holding it
        numbered = enumerate(todo)
        pending: dict[Any, tuple[Any, int, Any]] = {}  # ref -> (actor, item number, item)
        load: dict[Any, int] = {a: 0 for a in self._actors}

        def next_item() -> tuple[int, Any] | None:
            if retry:
                return retry.popleft()
            return next(numbered, None)

        def feed(actor: Any) -> None:
            while load.get(actor, 0) < max(1, self.spec.concurrency):
                nxt = next_item()
                if nxt is None:
                    return
                num, item = nxt
                pending[actor.run.remote(item, ctx_ref, counter)] = (actor, num, item)
                load[actor] = load.get(actor, 0) + 1

        def drain_progress() -> None:
            if counter is not None and progress is not None:
                n = ray.get(counter.take.remote())
                if n:
                    progress(n)

        for actor in list(self._actors):
            feed(actor)
        dead: set[Any] = set()
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=self.POLL_S)
                drain_progress()
                if not ready:
                    continue
                # everything else already finished joins the same batch
                ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
                batch = []
                for ref in ready:
                    actor, num, item = pending.pop(ref)
                    load[actor] = load.get(actor, 1) - 1
                    try:
                        batch.append(ray.get(ref))
                    except (RayActorError, ActorUnavailableError) as e:
                        kills[num] = kills.get(num, 0) + 1
                        cause = _ray_cause(e)
                        if actor not in dead:
                            dead.add(actor)
                            self.died += 1
                            log.error("a worker died (%s); starting a new one", cause)
                            new = self._replace(actor)
                            if new is not None:
                                load[new] = 0
                        if kills[num] < self.max_attempts:
                            retry.append((num, item))
                        else:
                            batch.append(
                                self.spec.lost(
                                    item,
                                    context,
                                    f"its worker died {kills[num]} times while running it "
                                    f"(last: {cause})",
                                    retryable=False,
                                )
                            )
                    except Exception as e:  # the step broke its contract and raised
                        log.error("worker error: %s", e)
                        batch.append(
                            self.spec.lost(item, context, f"worker error: {_ray_cause(e)}", True)
                        )
                if not self._actors:
                    raise WorkerError(
                        "every worker died and no new one could be started; "
                        "see the worker logs above"
                    )
                for a in list(self._actors):
                    feed(a)
                drain_progress()
                if batch:
                    yield batch
        finally:
            if counter is not None:
                with contextlib.suppress(Exception):
                    ray.kill(counter)

    def close(self) -> None:
        if self._actors:
            import ray

            for a in self._actors:
                with contextlib.suppress(Exception):
                    ray.kill(a)
            self._actors = []
            self._pids = {}
        if self._owns_ray:
            import ray

            ray.shutdown()
            self._owns_ray = False


def _ray_cause(e: BaseException) -> str:
    cause = getattr(e, "cause", None) or e.__cause__
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    text = str(e).strip()
    return text.splitlines()[-1] if text else type(e).__name__


def run_to_end(
    executor: Executor,
    items: Iterable[Any],
    handle: Callable[[Any], None],
    context: Any = None,
    progress: ProgressFn | None = None,
) -> Any:
    """Start ``executor``, hand every outcome to ``handle`` (the driver's commit) as it
    arrives, and always close it. Returns the steps' ``info()``."""
    info = executor.start()
    try:
        for batch in executor.run(items, context, progress):
            for outcome in batch:
                handle(outcome)
    finally:
        executor.close()
    return info


def make_executor(
    spec: StepSpec,
    executor: ExecutorName = "auto",
    workers: int = 1,
    ray_address: str | None = None,
    *,
    wants_gpu: bool = True,
) -> Executor:
    """``auto``: local for one worker on this machine, Ray for more workers or a cluster."""
    if workers < 1:
        raise ConfigError("workers must be >= 1")
    name = executor
    if name == "auto":
        remote = ray_address or os.environ.get("RAY_ADDRESS")
        name = "ray" if workers > 1 or remote else "local"
    if name == "local":
        if workers != 1:
            raise ConfigError("--executor local runs one worker; use --executor ray for more")
        return LocalExecutor(spec)
    if name == "ray":
        return RayExecutor(spec, workers, ray_address, wants_gpu=wants_gpu)
    raise ConfigError(f"unknown executor {name!r}; choose auto, local or ray")

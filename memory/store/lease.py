"""One writer per store: a ``flock`` on a directory, a lease on object storage.

A store has one committer at a time (see :mod:`videomem.memory.store`): two jobs
committing at once would each garbage-collect the other's not-yet-visible memory rows.
A local directory gets an exclusive ``flock`` that the kernel drops when the process
dies. Object storage has no locks, so a writer there holds a **lease**: a small object
``_writer.lease`` beside the tables, written only with conditional puts.

The lease protocol (every write is a compare-and-swap on the object's ETag)
==========================================================================

* **acquire**: ``PUT If-None-Match: *`` — exactly one of several racing writers creates
  it. The body names the holder (host, pid, a random id), its ttl and a renewal count.
* **renew** (a daemon thread, every ttl/3): ``PUT If-Match: <our ETag>`` with the count
  raised, so the ETag (the body's MD5) changes on every renewal.
* **release**: ``PUT If-Match`` of a body marked released. Nothing is ever deleted
  unconditionally, so a slow releaser cannot delete a lease someone else took since.
* **take over a dead holder's lease**: a contender watches the object for the holder's
  ttl on its *own* monotonic clock; if the ETag did not change in that time, the holder
  stopped renewing, and the contender swaps it with ``If-Match: <that ETag>`` (one of
  several contenders wins). No clocks are compared across machines. A released lease,
  or one whose holder's wall clock says it was renewed longer ago than ttl plus a
  generous clock-skew allowance (a job killed yesterday), is taken at once.
* **refuse or wait**: if the ETag changes while watching, the holder is alive: the
  contender refuses with a message naming it, or keeps watching up to ``wait_s``.

Why the holder never commits after a contender took over: the holder counts its lease
valid until (start of its last successful renewal request + ttl) on its monotonic clock,
and :meth:`ObjectLease.check` (called before every commit step) refuses once less than
ttl/3 of that is left. A contender takes over only after seeing the same ETag for a whole
ttl, which began after that renewal reached the server. This assumes clocks *tick* at
the same rate (not that they agree) and that one LanceDB commit step finishes within
ttl/3 of the check; there is no fencing token in LanceDB to do better. A lease whose
renewals fail (network) runs out the same way, and the holder's commits then fail with
a clear error instead of racing a successor.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from videomem.pipeline.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from obstore import UpdateVersion

log = logging.getLogger(__name__)

LEASE_NAME = "_writer.lease"
LOCK_NAME = ".writer.lock"

#: object_store's HTTP client settings (the rest of LanceDB's storage options are the
#: store's own settings: endpoint, region, keys …)
_CLIENT_KEYS = {
    "allow_http",
    "allow_invalid_certificates",
    "connect_timeout",
    "default_content_type",
    "http1_only",
    "http2_only",
    "pool_idle_timeout",
    "pool_max_idle_per_host",
    "proxy_url",
    "proxy_ca_certificate",
    "proxy_excludes",
    "timeout",
    "user_agent",
}
_BOOL_CLIENT_KEYS = {"allow_http", "allow_invalid_certificates", "http1_only", "http2_only"}


class WriterLock(Protocol):
    """What a writable Store holds: ``check`` before each commit, ``release`` at close."""

    def check(self) -> None: ...

    def release(self) -> None: ...


@dataclass(frozen=True)
class LeaseConfig:
    """How the writer lease on object storage behaves."""

    #: a holder that stops renewing (killed job, lost node) loses the lease this long
    #: after its last renewal; also how long a contender watches a silent lease
    ttl_s: float = 30.0
    #: how long a second writer waits for a live holder before refusing (0: refuse as
    #: soon as the holder is seen renewing)
    wait_s: float = 0.0
    #: a lease its holder last renewed (by the holder's wall clock) longer ago than
    #: ttl + this is taken at once, without watching; generous, since clocks may differ
    clock_skew_s: float = 300.0

    def __post_init__(self) -> None:
        if not self.ttl_s > 0:
            raise ConfigError(f"lease ttl must be > 0 seconds, got {self.ttl_s}")
        if self.wait_s < 0 or self.clock_skew_s < 0:
            raise ConfigError("lease wait and clock skew allowance must be >= 0")


# --------------------------------------------------------------------------- local


class FileLock:
    """An exclusive ``flock`` on ``<dir>/.writer.lock``; the kernel drops it on death."""

    def __init__(self, directory: Path) -> None:
        import fcntl

        path = directory / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(
                f"another videomem job is writing to {directory}; one writer per store"
            ) from None
        self._fd: int | None = fd

    def check(self) -> None:
        if self._fd is None:
            raise StoreError("the store's writer lock was released")

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None


# --------------------------------------------------------------------------- object storage


def object_store(uri: str, storage_options: Mapping[str, str]) -> Any:
    """An obstore store rooted at ``uri``, configured from LanceDB-style storage options
    (object_store's keys: ``aws_endpoint``, ``aws_region``, ``allow_http`` …) on top of
    the environment (``AWS_*`` …)."""
    from obstore.store import from_url

    config: dict[str, str] = {}
    client: dict[str, Any] = {}
    for key, value in storage_options.items():
        k = key.lower()
        if k in _CLIENT_KEYS:
            client[k] = (
                str(value).lower() in ("1", "true", "yes") if k in _BOOL_CLIENT_KEYS else value
            )
        else:
            config[k] = str(value)
    try:
        # user-given keys: obstore validates them at run time (its TypedDicts cannot here)
        return from_url(
            uri, config=cast(Any, config or None), client_options=cast(Any, client or None)
        )
    except Exception as e:  # unknown scheme or option
        raise StoreError(f"cannot open {uri} for the writer lease: {e}") from e


@dataclass(frozen=True)
class _Seen:
    etag: str
    version: str | None
    body: dict[str, Any]

    def mode(self) -> UpdateVersion:
        """The put mode that succeeds only if the object is still this one."""
        return _update_mode(self.etag, self.version)


def _update_mode(etag: str | None, version: str | None) -> UpdateVersion:
    mode: UpdateVersion = {"e_tag": etag or ""}
    if version:
        mode["version"] = version
    return mode


class ObjectLease:
    """The writer lease of a store on object storage (see the module docstring)."""

    def __init__(self, uri: str, store: Any, config: LeaseConfig) -> None:
        self.uri = uri
        self.config = config
        self._store = store
        self._id = uuid.uuid4().hex
        self._count = 0
        self._etag: str | None = None
        #: the object's version where the store has one (GCS generation, S3 versioning)
        self._version: str | None = None
        self._valid_until = 0.0
        self._lost: str | None = None
        self._last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ acquire

    @classmethod
    def acquire(
        cls, uri: str, storage_options: Mapping[str, str], config: LeaseConfig | None = None
    ) -> ObjectLease:
        lease = cls(uri, object_store(uri, storage_options), config or LeaseConfig())
        lease._acquire()
        lease._thread = threading.Thread(target=lease._heartbeat, name="lease", daemon=True)
        lease._thread.start()
        return lease

    def _body(self, released: bool = False) -> bytes:
        self._count += 1
        return json.dumps(
            {
                "holder": self._id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "ttl_s": self.config.ttl_s,
                "count": self._count,
                "renewed_at": time.time(),
                "released": released,
            }
        ).encode()

    def _put(self, mode: Any) -> bool:
        """One conditional put of a new body; True if it won (our ETag is updated)."""
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        started = time.monotonic()
        try:
            result = obstore.put(self._store, LEASE_NAME, self._body(), mode=mode)
        except (AlreadyExistsError, PreconditionError):
            return False
        except Exception as e:
            raise StoreError(f"store {self.uri}: cannot write its writer lease: {e}") from e
        self._etag, self._version = result["e_tag"], result.get("version")
        self._valid_until = started + self.config.ttl_s
        return True

    def _read(self) -> _Seen | None:
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            got = obstore.get(self._store, LEASE_NAME)
            raw = bytes(got.bytes())
        except NotFoundError:
            return None
        except Exception as e:
            raise StoreError(f"store {self.uri}: cannot read its writer lease: {e}") from e
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}  # unreadable: treated like a silent holder with our ttl
        meta = got.meta
        return _Seen(
            str(meta["e_tag"]), meta.get("version"), body if isinstance(body, dict) else {}
        )

    def _acquire(self) -> None:
        cfg = self.config
        give_up = time.monotonic() + cfg.wait_s
        while True:
            if self._put("create"):
                return
            seen = self._read()
            if seen is None:
                continue  # vanished between our put and read (deleted by hand): retry
            if self._free(seen) and self._put(seen.mode()):
                log.info("took over the writer lease of %s (%s)", self.uri, _who(seen.body))
                return
            ttl = max(cfg.ttl_s, float(seen.body.get("ttl_s") or 0))
            log.info(
                "%s: writer lease held by %s; watching it for %.0fs", self.uri, _who(seen.body), ttl
            )
            watch_end = time.monotonic() + ttl
            alive = False
            while time.monotonic() < watch_end:
                time.sleep(min(1.0, ttl / 10))
                now = self._read()
                if now is None or now.etag != seen.etag:
                    alive = now is not None and not self._free(now)
                    break
            else:  # silent for a whole ttl: its holder is gone
                if self._put(seen.mode()):
                    log.info("took over the silent writer lease of %s", self.uri)
                    return
                continue  # another contender won the swap
            if alive and time.monotonic() >= give_up:
                holder = now.body if now is not None else seen.body
                raise StoreError(
                    f"another videomem job is writing to {self.uri} ({_who(holder)}); one "
                    f"writer per store. Wait for it to finish (or to stop renewing its lease "
                    f"for {ttl:.0f}s if it was killed), or pass a wait time to wait for it"
                )

    def _free(self, seen: _Seen) -> bool:
        """Released, or by the holder's own wall clock long dead."""
        body = seen.body
        if body.get("released"):
            return True
        renewed = body.get("renewed_at")
        ttl = float(body.get("ttl_s") or self.config.ttl_s)
        if not isinstance(renewed, (int, float)):
            return False
        return time.time() - renewed > ttl + self.config.clock_skew_s

    # ------------------------------------------------------------------ hold

    def _heartbeat(self) -> None:
        period = self.config.ttl_s / 3
        while not self._stop.wait(period):
            try:
                if self._put(_update_mode(self._etag, self._version)):
                    continue
                seen = self._read()  # our last put may have landed without its reply
                if seen is not None and seen.body.get("holder") == self._id:
                    self._put(seen.mode())
                    continue
                who = _who(seen.body) if seen is not None else "nobody (lease deleted)"
                self._lost = f"taken over by {who}"
                log.error("store %s: writer lease lost: %s", self.uri, self._lost)
                return
            except StoreError as e:  # unreachable: the lease runs out unless renewed later
                self._last_error = str(e)
                log.warning("%s", e)

    def check(self) -> None:
        """Raise StoreError unless this process surely still holds the lease."""
        if self._lost is not None:
            raise StoreError(f"store {self.uri}: this job lost its writer lease ({self._lost})")
        left = self._valid_until - time.monotonic()
        if left < self.config.ttl_s / 3:
            raise StoreError(
                f"store {self.uri}: the writer lease could not be renewed in time "
                f"({max(left, 0):.1f}s left of {self.config.ttl_s:.0f}s"
                + (f"; last error: {self._last_error}" if self._last_error else "")
                + "); not committing. A slow or overloaded object store needs a longer lease ttl"
            )

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._etag is None or self._lost is not None:
            return
        import obstore

        try:
            mode = _update_mode(self._etag, self._version)
            obstore.put(self._store, LEASE_NAME, self._body(released=True), mode=mode)
        except Exception as e:  # it runs out by itself
            log.warning("store %s: could not release the writer lease: %s", self.uri, e)
        self._etag = None


def _who(body: Mapping[str, Any]) -> str:
    if not body:
        return "an unknown holder"
    return f"host {body.get('host', '?')}, pid {body.get('pid', '?')}"


def take_writer_lock(
    uri: str, storage_options: Mapping[str, str], lease: LeaseConfig | None
) -> WriterLock:
    """The single-writer guard for a store at ``uri`` (local path or object-store URI)."""
    if "://" not in uri:
        return FileLock(Path(uri))
    if uri.startswith("file://"):
        return FileLock(Path(uri[len("file://") :]))
    return ObjectLease.acquire(uri, storage_options, lease)

"""A real local Ray cluster for tests: ``ray start --head`` on 127.0.0.1 with the
dashboard (the job submission API), every port picked free, its own temp dir.

The head runs with ``--block`` in its own process group, so stopping it touches only
the processes it started (never ``ray stop``, which stops every Ray on the machine).
It uses token authentication (Ray's default) with a token of its own, passed in the
environment, so it neither reads nor writes ``~/.ray/auth_token``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.s3 import free_port

#: the ray CLI of this interpreter (not whatever ``ray`` is first on PATH)
RAY = [sys.executable, "-m", "ray.scripts.scripts"]


class LocalRayCluster:
    def __init__(self, num_cpus: int = 2) -> None:
        self.num_cpus = num_cpus
        self.port = free_port()
        self.dashboard_port = free_port()
        # short: Ray's unix sockets live under it (107-byte path limit)
        self.temp_dir = tempfile.mkdtemp(prefix="vmray", dir="/tmp")
        self.proc: subprocess.Popen | None = None
        self.token = secrets.token_hex(32)

    def env(self) -> dict[str, str]:
        """The environment of the head and of every client of this cluster."""
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token, RAY_USAGE_STATS_ENABLED="0")
        return env

    @property
    def address(self) -> str:
        """The job API address (what ``ray job submit --address`` takes)."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    def start(self, timeout: float = 180) -> LocalRayCluster:
        cmd = [
            *RAY, "start", "--head", "--block", "--disable-usage-stats",
            "--node-ip-address", "127.0.0.1", "--port", str(self.port),
            "--dashboard-host", "127.0.0.1", "--dashboard-port", str(self.dashboard_port),
            "--include-dashboard", "true", "--num-cpus", str(self.num_cpus), "--num-gpus", "0",
            "--temp-dir", self.temp_dir, "--ray-client-server-port", str(free_port()),
            "--dashboard-agent-listen-port", str(free_port()),
            "--dashboard-agent-grpc-port", str(free_port()),
            "--runtime-env-agent-port", str(free_port()),
            "--metrics-export-port", str(free_port()),
            "--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
            "--object-store-memory", str(200 * 1024**2),
        ]  # fmt: skip
        env = self.env()
        self.log = open(Path(self.temp_dir) / "head.log", "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited {self.proc.returncode}:\n{self.head_log()}")
            if self._jobs_api_up():
                return self
            time.sleep(1)
        raise RuntimeError(f"the Ray head did not come up in {timeout:.0f}s:\n{self.head_log()}")

    def _jobs_api_up(self) -> bool:
        import urllib.request

        try:
            request = urllib.request.Request(
                f"{self.address}/api/version", headers={"Authorization": f"Bearer {self.token}"}
            )
            with urllib.request.urlopen(request, timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def head_log(self) -> str:
        return (Path(self.temp_dir) / "head.log").read_text()[-4000:]

    def submit(self, *entrypoint: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """``ray job submit --address … -- ENTRYPOINT``: waits, streams the job's logs,
        and exits non-zero when the job fails."""
        env = self.env()
        return subprocess.run(
            [*RAY, "job", "submit", "--address", self.address, "--", *entrypoint],
            capture_output=True, text=True, timeout=timeout, env=env,
        )  # fmt: skip

    def pids(self) -> list[int]:
        """Every live process of this cluster: its process group, plus anything naming
        its temp dir (Ray's workers and agents)."""
        out = []
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                pgid = os.getpgid(int(p.name))
                cmdline = (p / "cmdline").read_bytes()
                if (p / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                    continue  # exited, waiting for its parent to reap it
            except (OSError, ProcessLookupError, IndexError):
                continue
            if (self.proc is not None and pgid == self.proc.pid) or (
                self.temp_dir.encode() in cmdline
            ):
                out.append(int(p.name))
        return out

    def stop(self) -> None:
        """Stop the head and everything it started; leaves no process behind."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)  # what `ray stop` sends first
        deadline = time.monotonic() + 10  # a test cluster holds nothing worth waiting for
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc = None
        self.log.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

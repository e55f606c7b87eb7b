"""A real S3-compatible server for tests: moto's server on a free 127.0.0.1 port.

Stores on it are opened through LanceDB's storage options exactly as a user would
open one on AWS (endpoint, region, keys, ``allow_http``), and the writer lease talks to
it with real conditional puts.
"""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass, field


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class S3Server:
    endpoint: str = ""
    _server: object = field(default=None, repr=False)

    def start(self) -> S3Server:
        from moto.server import ThreadedMotoServer

        port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._server.start()  # type: ignore[attr-defined]
        self.endpoint = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()  # type: ignore[attr-defined]
            self._server = None

    def options(self) -> dict[str, str]:
        """LanceDB storage options for this server (object_store's keys)."""
        return {
            "aws_endpoint": self.endpoint,
            "aws_region": "us-east-1",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            "allow_http": "true",
        }

    def new_store_uri(self) -> str:
        """``s3://<fresh bucket>/store``: every test gets its own bucket."""
        import boto3

        bucket = f"vm-{uuid.uuid4().hex[:12]}"
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client.create_bucket(Bucket=bucket)
        return f"s3://{bucket}/store"

    def cli_args(self) -> list[str]:
        """The same options as ``--storage-option KEY=VALUE`` flags."""
        return [a for k, v in self.options().items() for a in ("--storage-option", f"{k}={v}")]

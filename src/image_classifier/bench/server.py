"""A real uvicorn serving the API on a free loopback port, for the serving benchmarks."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from image_classifier.errors import UserError
from image_classifier.runtime import stop_process


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class UvicornServer:
    """``uvicorn --factory image_classifier.api.app:create_app`` in a subprocess on a free loopback port."""

    def __init__(
        self, model_path: Path, max_batch: int, max_wait_ms: float, threads: int, env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "MODEL_PATH": str(model_path),
            "IC_MAX_BATCH": str(max_batch),
            "IC_MAX_WAIT_MS": str(max_wait_ms),
            "IC_PREDICTION_LOG": "",
            "IC_THREADS": str(threads),
            **(env or {}),
        }
        command = [sys.executable, "-m", "uvicorn", "--factory", "image_classifier.api.app:create_app",
                   "--host", "127.0.0.1", "--port", str(self.port),
                   "--log-level", "warning", "--no-access-log"]  # fmt: skip
        self.process = subprocess.Popen(command, env=env)
        self.url = f"http://127.0.0.1:{self.port}"

    async def wait_healthy(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise UserError(f"uvicorn exited with status {self.process.returncode}")
                try:
                    async with session.get(f"{self.url}/health") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise UserError(f"uvicorn did not become healthy in {timeout:.0f} s")

    def stop(self) -> None:
        stop_process(self.process)

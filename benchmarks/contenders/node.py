"""Node.js columns for PostgreSQL: node-postgres (``pg``) and postgres.js, on the
concurrent and fetch_all workloads. Each runs in a long-lived ``node`` process
(benchmarks/node/bench.mjs) that times the workload itself and answers in JSON; they
take part only when benchmarks/node/node_modules exists (``npm install --prefix
benchmarks/node``) and ``node`` is on PATH."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, ClassVar

from ..config import BackendConfig
from .base import PartialContender, RunResult

__all__ = ["NODE_DIR", "NodePostgres", "PostgresJs", "node_missing"]

NODE_DIR = Path(__file__).resolve().parent.parent / "node"
_WORKLOADS = ("concurrent", "fetch_all")


def node_missing() -> str | None:
    """Why the Node columns cannot run, or None when they can."""
    if shutil.which("node") is None:
        return "node is not on PATH"
    if not (NODE_DIR / "node_modules").is_dir():
        return "benchmarks/node/node_modules is missing: run npm install --prefix benchmarks/node"
    return None


class NodeContender(PartialContender):
    client: ClassVar[str]
    scope: ClassVar[str] = "Node.js columns cover the concurrent and fetch_all workloads only"

    _proc: asyncio.subprocess.Process | None = None
    _stderr: IO[bytes] | None = None

    @classmethod
    def applicable(cls, backend: BackendConfig) -> bool:
        return backend.name == "postgresql" and node_missing() is None

    async def open(self) -> None:
        sizes = self.sizes
        config = {
            "client": self.client,
            "url": self.backend.url,
            "poolSize": sizes.pool_size,
            "rows": sizes.rows,
            "fetchAllRepeats": sizes.fetch_all_repeats,
            "tasks": sizes.concurrent_tasks,
            "queries": sizes.concurrent_queries,
        }
        # Open as long as the process runs; closed in close().
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self._proc = await asyncio.create_subprocess_exec(
            shutil.which("node") or "node",
            str(NODE_DIR / "bench.mjs"),
            json.dumps(config),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._stderr,
        )
        ready = await self._receive()
        self.info = {"node": str(ready.get("node")), self.client: str(ready.get("version"))}

    def describe(self) -> dict[str, str]:
        return dict(getattr(self, "info", {}))

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    async def _receive(self) -> dict[str, Any]:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        line = await proc.stdout.readline()
        if not line:
            await proc.wait()
            raise RuntimeError(f"node exited ({proc.returncode}): {self._stderr_tail()}")
        message: dict[str, Any] = json.loads(line)
        if "error" in message:
            raise RuntimeError(f"node: {message['error']}")
        return message

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()[-500:]

    async def run(self, workload: str) -> RunResult:
        if workload not in _WORKLOADS:
            return await super().run(workload)
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        proc.stdin.write(json.dumps({"workload": workload}).encode() + b"\n")
        await proc.stdin.drain()
        reply = await self._receive()
        return RunResult(float(reply["seconds"]), int(reply["rows"]))


class NodePostgres(NodeContender):
    name: ClassVar[str] = "node-postgres"
    client: ClassVar[str] = "pg"


class PostgresJs(NodeContender):
    name: ClassVar[str] = "postgres.js"
    client: ClassVar[str] = "postgres.js"

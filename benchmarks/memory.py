"""The --memory mode: per backend, generate ``memory_rows`` rows once, then for each
contender start a fresh Python process (benchmarks.memory_worker) that streams them
all and reports its peak RSS growth."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from . import loops
from .config import BackendConfig, Sizes, backend_config
from .contenders import RAW, for_backend
from .dataset import open_admin
from .environment import PROJECT_ROOT, environment
from .schema import BIG, ITEMS

__all__ = ["WARMUP_ROWS", "run_memory"]

#: Rows of the small table each worker streams first, untimed, before its baseline.
WARMUP_ROWS = 1_000


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def _prepare(backend: BackendConfig, sizes: Sizes) -> str:
    admin = await open_admin(backend)
    try:
        version = await admin.server_version()
        _progress(f"[{backend.name} memory] {version}: generating {sizes.memory_rows} rows")
        started = time.perf_counter()
        await admin.create_filled(ITEMS, min(WARMUP_ROWS, sizes.rows))
        await admin.create_filled(BIG, sizes.memory_rows)
        _progress(f"[{backend.name} memory] generated in {time.perf_counter() - started:.1f} s")
        return version
    finally:
        await admin.close()


async def _drop(backend: BackendConfig) -> None:
    admin = await open_admin(backend)
    try:
        for table in (ITEMS, BIG):
            await admin.execute(f"DROP TABLE IF EXISTS {table.name}")
    finally:
        await admin.close()


async def _environment(loop: str) -> dict[str, Any]:
    return environment(loop)


def _worker(backend: BackendConfig, contender: str, sizes: Sizes, loop: str) -> dict[str, Any]:
    request = {
        "backend": backend.name,
        "contender": contender,
        "loop": loop,
        "sizes": dataclasses.asdict(dataclasses.replace(sizes, rows=min(WARMUP_ROWS, sizes.rows))),
    }
    env = dict(os.environ)
    if backend.name == "sqlite":
        env["BENCH_SQLITE_PATH"] = backend.database
    try:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.memory_worker", json.dumps(request)],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=max(sizes.timeout * 2, 60.0),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"status": "failed", "reason": "timed out"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        error = done.stderr.strip().splitlines()
        reason = error[-1] if error else f"exit status {done.returncode}"
        return {"status": "failed", "reason": reason}
    return {"status": "ok", **json.loads(lines[-1])}


def run_memory(
    backends: list[str], sizes: Sizes, loop: str, names: set[str] | None = None
) -> dict[str, Any]:
    """Measure every backend; failures are recorded, never raised."""
    started = time.perf_counter()
    report: dict[str, Any] = {
        "environment": loops.run(_environment(loop), loop),
        "rows": sizes.memory_rows,
        "warmup_rows": min(WARMUP_ROWS, sizes.rows),
        "chunk_size": sizes.chunk_size,
        "backends": {},
    }
    for name in backends:
        with tempfile.TemporaryDirectory(prefix="dbaccess-bench-") as scratch:
            backend = backend_config(name, scratch)
            entry: dict[str, Any] = {"raw": RAW[name], **backend.describe(), "results": {}}
            report["backends"][name] = entry
            try:
                entry["server_version"] = loops.run(_prepare(backend, sizes), loop)
            except Exception as exc:
                entry["error"] = f"cannot prepare {name}: {type(exc).__name__}: {exc}"
                _progress(entry["error"])
                continue
            try:
                for cls in for_backend(backend, names):
                    if not cls.streams:
                        continue
                    result = _worker(backend, cls.name, sizes, loop)
                    entry["results"][cls.name] = result
                    shown = (
                        f"{result['growth_mb']} MB in {result['seconds']} s"
                        if result["status"] == "ok"
                        else f"failed: {result['reason']}"
                    )
                    _progress(f"[{name} memory] {cls.name:<12} {shown}")
            finally:
                try:
                    loops.run(_drop(backend), loop)
                except Exception as exc:
                    _progress(f"[{name} memory] could not drop the tables: {exc}")
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    return report

"""python -m benchmarks: time dbaccess against the raw drivers, encode/databases and
SQLAlchemy on PostgreSQL, MySQL/MariaDB and SQLite (see benchmarks/README.md)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import loops
from .config import BACKENDS, FULL, QUICK, WORKLOADS, Sizes, backend_config
from .contenders import NAMES
from .environment import environment
from .memory import run_memory
from .report import RESULTS_DIR, memory_tables, summary, timing_tables, write_json
from .runner import BackendRun, run_backend

__all__ = ["main"]


def _list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
    )
    parser.add_argument(
        "--backends",
        type=_list,
        default=list(BACKENDS),
        help="comma-separated subset of " + ",".join(BACKENDS) + " (default all)",
    )
    parser.add_argument(
        "--contenders",
        type=_list,
        default=None,
        help="comma-separated subset of: "
        + ",".join(NAMES)
        + " ('raw' names each backend's raw driver; default all)",
    )
    parser.add_argument(
        "--workloads",
        type=_list,
        default=list(WORKLOADS),
        help="comma-separated subset of " + ",".join(WORKLOADS) + " (default all)",
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 5, quick 1)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round: for CI")
    parser.add_argument(
        "--loop", choices=loops.LOOPS, default="asyncio", help="event loop (default asyncio)"
    )
    parser.add_argument(
        "--stat",
        choices=("best", "median"),
        default="best",
        help="what the timing tables show of the rounds (default best; the JSON has both)",
    )
    parser.add_argument("--memory", action="store_true", help="measure peak RSS while streaming")
    parser.add_argument("--markdown", type=Path, help="also write the tables as Markdown here")
    parser.add_argument(
        "--json",
        type=Path,
        default=RESULTS_DIR / "latest.json",
        help="JSON results file, its other mode's section kept "
        "(default benchmarks/results/latest.json)",
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds one run may take (default 300)"
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a backend could not run or a dbaccess measurement failed",
    )
    args = parser.parse_args(argv)
    unknown = set(args.backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backends {sorted(unknown)}: choose from {', '.join(BACKENDS)}")
    if unknown := set(args.workloads) - set(WORKLOADS):
        parser.error(f"unknown workloads {sorted(unknown)}: choose from {', '.join(WORKLOADS)}")
    if args.contenders is not None:
        known = {*NAMES, "raw"}
        if unknown := set(args.contenders) - known:
            parser.error(f"unknown contenders {sorted(unknown)}: choose from {sorted(known)}")
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def _sizes(args: argparse.Namespace) -> Sizes:
    sizes = QUICK if args.quick else FULL
    if args.rounds is not None:
        sizes = dataclasses.replace(sizes, rounds=args.rounds)
    if args.timeout is not None:
        sizes = dataclasses.replace(sizes, timeout=args.timeout)
    return sizes


async def _timing(
    backends: list[str],
    sizes: Sizes,
    names: set[str] | None,
    workloads: list[str],
    loop: str,
    scratch: str,
) -> dict[str, Any]:
    started = time.perf_counter()
    env = environment(loop)
    runs: dict[str, Any] = {}
    for name in backends:
        backend = backend_config(name, scratch)
        run: BackendRun = await run_backend(backend, sizes, names, workloads)
        runs[name] = run.as_dict(backend.describe())
    return {
        "environment": env,
        "sizes": sizes.as_dict(),
        "backends": runs,
        "total_seconds": round(time.perf_counter() - started, 1),
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
    }


def _failed(section: dict[str, Any], memory: bool) -> list[str]:
    problems = []
    for name, backend in section["backends"].items():
        if backend.get("error"):
            problems.append(f"{name}: {backend['error']}")
        if memory:
            result = backend["results"].get("dbaccess")
            if result is not None and result["status"] != "ok":
                problems.append(f"{name} memory: dbaccess {result['reason']}")
            continue
        for workload, row in backend["results"].items():
            cell = row.get("dbaccess")
            if cell is not None and cell["status"] == "failed":
                problems.append(f"{name} {workload}: dbaccess {cell['reason']}")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = _sizes(args)
    names = set(args.contenders) if args.contenders is not None else None
    if args.memory:
        section = run_memory(args.backends, sizes, args.loop, names)
        write_json(args.json, "memory", section)
        text = memory_tables(section)
        markdown = "## Memory\n\n" + summary(section, True) + "\n" + memory_tables(section, True)
    else:
        with tempfile.TemporaryDirectory(prefix="dbaccess-bench-") as scratch:
            section = loops.run(
                _timing(args.backends, sizes, names, args.workloads, args.loop, scratch), args.loop
            )
        write_json(args.json, "timing", section)
        text = timing_tables(section, stat=args.stat)
        markdown = (
            "## Timing\n\n"
            + summary(section, True)
            + f"- {args.stat} of the rounds shown\n\n"
            + timing_tables(section, True, args.stat)
        )
        text = f"{args.stat} of the rounds shown\n\n" + text
    print()
    print(summary(section))
    print(text)
    print(f"results: {args.json}")
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown)
        print(f"markdown: {args.markdown}")
    problems = _failed(section, args.memory)
    if args.strict and problems:
        print("strict: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Printing the results as tables (plain text or Markdown) and writing them as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config import WORKLOADS

__all__ = ["RESULTS_DIR", "memory_tables", "summary", "timing_tables", "write_json"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _table(header: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]

    def render(row: list[str]) -> str:
        first = row[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([render(header), rule, *(render(row) for row in rows)])


def _short_version(version: str | None) -> str:
    if not version:
        return "?"
    words = version.split()
    if words[0] == "PostgreSQL" and len(words) > 1:
        return f"PostgreSQL {words[1]}"
    return version


class _Notes:
    """Numbered footnotes: the same reason gets the same number."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def mark(self, reason: str | None) -> str:
        reason = reason or "no reason given"
        if reason not in self.reasons:
            self.reasons.append(reason)
        return f"[{self.reasons.index(reason) + 1}]"

    def render(self, markdown: bool) -> str:
        prefix = "" if markdown else "  "
        return "\n".join(f"{prefix}[{i}] {reason}" for i, reason in enumerate(self.reasons, 1))


#: A cell whose median is more than this many times its best is marked noisy ("~").
NOISY = 1.25


def _noisy(result: dict[str, Any]) -> bool:
    best, median = result["best"], result["median"]
    return bool(best and median and len(result["times"]) > 1 and median > NOISY * best)


def _timing_cell(
    result: dict[str, Any], raw: dict[str, Any] | None, stat: str, notes: _Notes
) -> str:
    status = result["status"]
    if status == "n/a":
        return "n/a"
    if status != "ok":
        return f"failed {notes.mark(result['reason'])}"
    value = result[stat]
    if value is None:
        return "not run"
    raw_value = raw[stat] if raw is not None and raw["status"] == "ok" else None
    ratio = f"({value / raw_value:.2f}x)" if raw_value else "(-)"
    return f"{value:.4f} s {ratio}" + (" ~" if _noisy(result) else "")


def _noise_check(backend: dict[str, Any]) -> str | None:
    """How far apart the raw driver's rounds of point_raw came out: a measure of the
    noise of this run (one round: none)."""
    try:
        times = backend["results"]["point_raw"][backend["raw"]]["times"]
    except KeyError:
        return None
    if len(times) < 2:
        return None
    low, high = min(times), max(times)
    return (
        f"noise check: {backend['raw']}'s point_raw took {low:.4f} s to {high:.4f} s over "
        f"{len(times)} rounds ({(high - low) / low * 100:.0f}% apart): smaller differences "
        "between cells are noise"
    )


def _core_cost(backend: dict[str, Any], stat: str) -> str | None:
    """dbaccess's own cost of a Core point query, over the raw driver's point_core (the
    driver plus building the statement), as a share of the raw query alone."""
    results, raw = backend["results"], backend["raw"]
    try:
        ours, limit = results["point_core"]["dbaccess"][stat], results["point_core"][raw][stat]
        query = results["point_raw"][raw][stat]
    except KeyError:
        return None
    if not (ours and limit and query):
        return None
    return (
        f"Core's own cost: dbaccess's point_core took {ours - limit:+.4f} s more than "
        f"{raw}'s, which builds the same statements and runs the SQL string: "
        f"{(ours - limit) / query * 100:+.0f}% of the raw queries' time ({raw}'s point_raw)"
    )


def timing_tables(timing: dict[str, Any], markdown: bool = False, stat: str = "best") -> str:
    """One table per backend: workloads down, contenders across, the best (or median)
    seconds of the rounds and the ratio to the raw driver's."""
    blocks = []
    for name, backend in timing["backends"].items():
        title = f"{name}: {_short_version(backend['server_version'])}, raw driver {backend['raw']}"
        parts = [f"### {title}" if markdown else f"== {title}"]
        if backend["error"]:
            parts.append(f"not measured: {backend['error']}")
        contenders = backend["contenders"]
        results = backend["results"]
        measured = any(
            cell["status"] != "ok" or cell["times"]
            for row in results.values()
            for cell in row.values()
        )
        if contenders and measured:
            notes = _Notes()
            rows = []
            for workload in WORKLOADS:
                if workload not in results:
                    continue
                row = results[workload]
                raw = row.get(backend["raw"])
                rows.append(
                    [workload] + [_timing_cell(row[c], raw, stat, notes) for c in contenders]
                )
            parts.append(_table(["workload", *contenders], rows, markdown))
            if notes.reasons:
                parts.append(notes.render(markdown))
            if any("~" in cell for row in rows for cell in row):
                parts.append(
                    f"~ noisy: the median of the rounds is over {NOISY}x the best "
                    "(every round is in the JSON)"
                )
            for line in (_core_cost(backend, stat), _noise_check(backend)):
                if line is not None:
                    parts.append(line)
        parts.extend(f"note: {note}" for note in backend["notes"])
        blocks.append("\n\n".join(parts))
    return "\n\n".join(blocks) + "\n"


def memory_tables(memory: dict[str, Any], markdown: bool = False) -> str:
    """Peak RSS growth while streaming: backends down, contenders across (the raw
    driver's column is the backend's own driver)."""
    contenders: list[str] = []
    for backend in memory["backends"].values():
        for name in backend["results"]:
            column = "raw driver" if name == backend["raw"] else name
            if column not in contenders:
                contenders.append(column)
    rows, notes = [], _Notes()
    for name, backend in memory["backends"].items():
        row = [f"{name} ({backend['raw']})"]
        for contender in contenders:
            key = backend["raw"] if contender == "raw driver" else contender
            result = backend["results"].get(key)
            if backend.get("error"):
                row.append(f"failed {notes.mark(backend['error'])}")
            elif result is None:
                row.append("n/a")
            elif result["status"] != "ok":
                row.append(f"failed {notes.mark(result['reason'])}")
            else:
                row.append(f"{result['growth_mb']:.1f} MB ({result['seconds']:.2f} s)")
        rows.append(row)
    title = (
        f"Peak RSS growth streaming {memory['rows']:,} rows "
        "(MB above the RSS after setup; stream time in parentheses)"
    )
    head = f"### {title}" if markdown else f"== {title}"
    parts = [head, _table(["backend", *contenders], rows, markdown)]
    if notes.reasons:
        parts.append(notes.render(markdown))
    parts.append(
        "The raw driver streams with its own cursor: asyncpg's cursor in a transaction, "
        "aiomysql's SSCursor, aiosqlite's cursor with fetchmany."
    )
    return "\n\n".join(parts) + "\n"


def summary(section: dict[str, Any], markdown: bool = False) -> str:
    """The facts to read a table by: where, what versions, what sizes."""
    env = section["environment"]
    packages = ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v)
    commit = (env.get("dbaccess_commit") or "unknown")[:12]
    lines = [
        f"{env['date']}; Python {env['python']} on {env['platform']} ({env['cpus']} CPUs), "
        f"loop {env['loop']} ({env['loop_class']}); dbaccess commit {commit}, "
        f"source sha256 {env['dbaccess_source_sha256'][:12]}",
        packages,
    ]
    if "sizes" in section:
        s = section["sizes"]
        lines.append(
            f"{s['rounds']} interleaved rounds; {s['rows']:,} rows; "
            f"point queries {s['point_queries']:,}; fetch_all x{s['fetch_all_repeats']}; "
            f"execute_many {s['execute_many_rows']:,} rows; concurrent {s['concurrent_tasks']} "
            f"tasks x {s['concurrent_queries']} queries, pool {s['pool_size']}; "
            f"transactions {s['transactions']:,}; stream chunk {s['chunk_size']:,}"
        )
    if "total_seconds" in section:
        lines.append(f"whole run: {section['total_seconds']:.0f} s")
    if markdown:
        return "\n".join(f"- {line}" for line in lines) + "\n"
    return "\n".join(lines) + "\n"


def write_json(path: Path, section: str, data: dict[str, Any]) -> None:
    """Write ``data`` as ``section`` ("timing" or "memory") of the JSON file at
    ``path``, keeping the other section of an earlier run (each carries its own
    environment and date)."""
    document: dict[str, Any] = {}
    if path.is_file():
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            document = {}
    document[section] = data
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")

"""One --memory measurement, in a process of its own: open one contender, stream the
big table, print one JSON line with the peak RSS growth.

Run by ``benchmarks.memory`` as ``python -m benchmarks.memory_worker '<json>'``.

The peak is the kernel's high-water mark of the resident set (VmHWM in
/proc/self/status), reset to the current RSS just before streaming by writing 5 to
/proc/self/clear_refs (Linux 4.0+). A background thread also samples the RSS with
psutil every millisecond or so: its peak is reported beside, and used where the
high-water mark cannot be reset (not Linux, or clear_refs not writable).
"""

from __future__ import annotations

import gc
import json
import sys
import threading
import time
from typing import Any

import psutil  # type: ignore[import-untyped]

from . import loops
from .config import Sizes, backend_config
from .contenders import load
from .schema import BIG

__all__ = ["PeakRSS", "main"]

MB = 1024 * 1024


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakRSS:
    """The peak resident set size between :meth:`start` and :meth:`stop`."""

    def __init__(self, interval: float = 0.001) -> None:
        self._process = psutil.Process()
        self._interval = interval
        self._sampled = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.baseline = 0
        self._hwm_reset = False

    def _rss(self) -> int:
        return int(self._process.memory_info().rss)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._sampled = max(self._sampled, self._rss())
            time.sleep(self._interval)

    def start(self) -> None:
        self.baseline = self._sampled = self._rss()
        try:
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")  # reset VmHWM to the current RSS
            self._hwm_reset = _status_kb("VmHWM") is not None
        except OSError:
            self._hwm_reset = False
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        sampled = max(self._sampled, self._rss())
        hwm_kb = _status_kb("VmHWM") if self._hwm_reset else None
        peak = hwm_kb * 1024 if hwm_kb is not None else sampled
        return {
            "method": "VmHWM after clear_refs" if hwm_kb is not None else "psutil sampling",
            "baseline_mb": round(self.baseline / MB, 1),
            "peak_mb": round(peak / MB, 1),
            "growth_mb": round((peak - self.baseline) / MB, 1),
            "sampled_growth_mb": round((sampled - self.baseline) / MB, 1),
        }


async def measure(backend_name: str, contender_name: str, sizes: Sizes) -> dict[str, Any]:
    backend = backend_config(backend_name)
    cls = load(contender_name)
    contender = cls(backend, sizes)
    await contender.open()
    try:
        # Warm up on the small table, so that first-use work (imports, caches, the
        # dialect's first-connect queries) is done before the baseline.
        await contender.iterate()
        gc.collect()
        peak = PeakRSS()
        peak.start()
        start = time.perf_counter()
        rows = await contender.stream(BIG)
        seconds = time.perf_counter() - start
        result = peak.stop()
    finally:
        await contender.close()
    if rows != sizes.memory_rows:
        raise RuntimeError(f"streamed {rows} rows where {sizes.memory_rows} were expected")
    return {**result, "rows": rows, "seconds": round(seconds, 3)}


def main() -> None:
    request = json.loads(sys.argv[1])
    sizes = Sizes(**request["sizes"])
    result = loops.run(measure(request["backend"], request["contender"], sizes), request["loop"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()

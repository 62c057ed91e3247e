"""Profile a Python command's CPU on every thread: `profile_run.py OUT.pstats -m module args...`.

cProfile sees only the thread that started it, while reindex decodes Scan pages on its scan
threads. Here every thread gets its own profiler timed by that thread's CPU clock
(`time.thread_time`), and the profiles are merged at exit: `tottime` is then CPU, not wall time,
which is what a shared machine lets one compare. Prints the top entries by own CPU.
"""

from __future__ import annotations

import atexit
import cProfile
import pstats
import runpy
import sys
import threading
import time
from typing import Any

_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()


def _new_profile() -> cProfile.Profile:
    profile = cProfile.Profile(time.thread_time)
    with _lock:
        _profiles.append(profile)
    return profile


def _patch_threads() -> None:
    original = threading.Thread.run

    def run(self: threading.Thread) -> None:
        profile = _new_profile()
        profile.enable()
        try:
            original(self)
        finally:
            profile.disable()

    threading.Thread.run = run  # type: ignore[method-assign]


def _dump(out: str, main: cProfile.Profile, started: float) -> None:
    main.disable()
    cpu = time.process_time() - started
    with _lock:
        profiles = list(_profiles)
    stats = pstats.Stats(main)
    for profile in profiles:
        if profile is not main:
            stats.add(profile)
    stats.dump_stats(out)
    print(f"\nprocess CPU {cpu:.2f} s; profile in {out}", file=sys.stderr)
    stats.sort_stats("tottime").print_stats(35)
    stats.sort_stats("cumulative").print_stats(25)


def main(argv: list[str]) -> Any:
    out, flag, module, *rest = argv
    if flag != "-m":
        raise SystemExit("usage: profile_run.py OUT.pstats -m module [args...]")
    _patch_threads()
    started = time.process_time()
    main_profile = _new_profile()
    atexit.register(_dump, out, main_profile, started)
    sys.argv = [module, *rest]
    main_profile.enable()
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])

"""Before/after table from bench/results/<label>.json files of `bench/run.py --core` runs.

.venv/bin/python bench/compare.py before-small-es after-small-es ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def row(label: str) -> str:
    data = json.loads((RESULTS / f"{label}.json").read_text())
    p, s, c = data["phases"], data["summary"], data["config"]
    t, base, w, r = p["T"], p["baseline"], p["W"], p["R fast"]
    runs = "/".join(f"{x:.0f}" for x in t["runs"]) if len(t["runs"]) > 1 else ""
    w_runs = "/".join(f"{x:.0f}" for x in w["runs"]) if len(w["runs"]) > 1 else ""
    return (
        f"| {label} | {c['kind']} | {c['engine']} | {t['cpu_us_per_item']:.0f} | "
        f"{base['cpu_us_per_item']:.0f} | **{s['cpu_ratio_T_over_baseline']:.2f}** | "
        f"{w['cpu_us_per_item']:.0f} | {r['items_per_s']:.0f} | "
        f"{w['items_per_s']:.0f}{' (' + w_runs + ')' if w_runs else ''} | "
        f"{t['items_per_s']:.0f}{' (' + runs + ')' if runs else ''} | "
        f"**{s['T_over_min_R_W']:.2f}** | {s['memory_growth_mb']:+.0f} MB | "
        f"{t['other_cores']:.1f} |"
    )


def main() -> int:
    print(
        "| run | items | engine | T CPU/item (us) | baseline CPU/item | T / baseline | "
        "W CPU/item | R items/s | W items/s | T items/s | T / min(R, W) | RSS 2k -> 20k | "
        "others (cores) |"
    )
    print("|" + "---|" * 13)
    for label in sys.argv[1:]:
        if (RESULTS / f"{label}.json").is_file():
            print(row(label))
    return 0


if __name__ == "__main__":
    sys.exit(main())

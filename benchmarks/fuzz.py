"""Property-based fuzz of the public API, the large run (issue 30, item 7).

Runs the harness of ``tests/test_property_fuzz.py`` — every preset × ``log_prob`` / ``transform(...)`` /
``transform.forward`` / ``transform.inverse`` / ``sample`` / ``sample_and_log_prob`` × hostile values (shapes,
dtypes, NaN/inf, 1e30 and 3e38, wrong types, bool-as-int, bad contexts and sample shapes) — with many more
examples than CI, and reports how many calls returned a finite result (``ok``), were refused with a clear
``ValueError``/``TypeError``/``NotImplementedError`` (``refused``), crashed with any other exception (``ugly``)
or returned NaN, or inf without a warning, from an input in the support (``silent``). Exits 1 when ``ugly`` or
``silent`` is not zero, listing the first cases.

Run (from the repository root): ``PYTHONPATH=src python benchmarks/fuzz.py --examples 2000 --seed 0``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, seed, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.test_property_fuzz import DENSITY, SAMPLING, Tally, cases, run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=2000, help="hypothesis examples per method group")
    ap.add_argument("--seed", type=int, default=0, help="hypothesis seed")
    ap.add_argument("--out", type=Path, default=None, help="write the counts as JSON here")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    tally = Tally()
    per_method: dict[str, Counter] = {}
    start = time.perf_counter()
    for methods in (DENSITY, SAMPLING):

        @seed(a.seed)
        @settings(
            max_examples=a.examples,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(case=cases(methods))
        def explore(case):
            outcome = run(case)
            tally.counts[outcome] += 1
            per_method.setdefault(f"{case.name}.{case.method}", Counter())[outcome] += 1
            if outcome in ("ugly", "silent"):
                tally.bad.append((outcome, case))

        torch.manual_seed(a.seed)
        explore()
    seconds = time.perf_counter() - start
    total = sum(tally.counts.values())
    print(
        f"{total} calls in {seconds:.0f} s: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.counts.items()))
    )
    for outcome, case in tally.bad[:20]:
        print(f"  {outcome}: {case!r}")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(
            json.dumps(
                {
                    "examples_per_group": a.examples,
                    "seed": a.seed,
                    "seconds": round(seconds, 1),
                    "counts": dict(tally.counts),
                    "per_method": {k: dict(v) for k, v in sorted(per_method.items())},
                    "bad": [f"{o}: {c!r}" for o, c in tally.bad],
                },
                indent=1,
            )
        )
    return 1 if tally.counts["ugly"] or tally.counts["silent"] else 0


if __name__ == "__main__":
    sys.exit(main())

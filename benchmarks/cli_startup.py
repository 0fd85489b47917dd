"""How long the ``pushforward`` command takes to start: ``--help`` and scoring a small file.

Each command runs ``--repeats`` times in a fresh interpreter; the script prints the median wall time and the
median CPU time (user + system, from ``resource.getrusage`` of the children). On a shared machine the CPU time
is the figure to compare: wall time includes waiting for a core. Targets (issue 27.4): ``--help`` under
1.5 s, scoring a small file under 3 s.

    python benchmarks/cli_startup.py [--repeats 5] [--out benchmarks/results/cli_startup.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SRC = Path(__file__).resolve().parents[1] / "src"


def timed(argv: list[str], cwd: Path) -> tuple[float, float]:
    """``(wall seconds, CPU seconds)`` of one run of ``python -m pushforward ARGV``."""
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pushforward", *argv], cwd=cwd, env=env, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise RuntimeError(f"pushforward {' '.join(argv)} failed: {out.stderr.decode()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cli-startup-"))
    rng = np.random.default_rng(0)
    np.savetxt(work / "d.csv", rng.normal(size=(300, 3)), delimiter=",", header="a,b,c", comments="")
    timed(["fit", "d.csv", "--steps", "20", "--no-progress", "--out", "m.safetensors"], work)
    results = {}
    for name, argv in (("help", ["--help"]), ("score_300_rows", ["score", "m.safetensors", "d.csv"])):
        runs = [timed(argv, work) for _ in range(a.repeats)]
        results[name] = {
            "wall_s": statistics.median(r[0] for r in runs),
            "cpu_s": statistics.median(r[1] for r in runs),
            "repeats": a.repeats,
        }
        print(f"{name:16s} median wall {results[name]['wall_s']:.2f} s, CPU {results[name]['cpu_s']:.2f} s")
    results["load_average"] = os.getloadavg()[0]
    results["cores"] = os.cpu_count()
    print(f"(1-minute load average {results['load_average']:.1f} on {results['cores']} cores)")
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""How long Snakemake takes to plan each configuration's DAG (`snakemake -n`), measured in one run.

The paper's grid is 2,400 jobs; planning it should stay well under a minute (goal: 60 s on a
2-core machine with nothing else running), or every cluster submission starts with a long wait.
Each configuration is planned in a fresh temporary directory holding links to this checkout's
`config.yaml`, `configs/` and `tests/` (what the configurations read), so nothing is written into
the checkout. Reported per configuration: jobs, seconds, and milliseconds per job, the ratio to
compare across machines.

    python benchmarks/dry_run.py [--config paper --config smoke] [--repeats 3] [--out dry-run.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kcs.provenance import git_commit, package_versions

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"paper": REPO / "config.yaml", "demo": REPO / "configs" / "demo.yaml", "smoke": REPO / "configs" / "smoke.yaml"}
LINKED = ("config.yaml", "configs", "tests")
GOAL_SECONDS = 60


def plan_once(config: Path) -> tuple[int, float]:
    """Jobs and wall seconds of one `snakemake -n --quiet rules` in a fresh directory."""
    with tempfile.TemporaryDirectory(prefix="kcs-dry-run-") as workdir:
        for name in LINKED:
            (Path(workdir) / name).symlink_to(REPO / name, target_is_directory=(REPO / name).is_dir())
        command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                   "--configfile", str(config), "-n", "--quiet", "rules"]
        started = time.monotonic()
        result = subprocess.run(command, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        seconds = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"the dry run of {config} failed:\n" + "\n".join(result.stdout.splitlines()[-30:]))
    total = re.search(r"^total\s+(\d+)", result.stdout, flags=re.MULTILINE)
    if total is None:
        raise SystemExit(f"the dry run of {config} printed no job count:\n{result.stdout[-2000:]}")
    return int(total.group(1)), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", choices=sorted(CONFIGS),
                        help="a configuration to plan (repeatable; default: paper and smoke)")
    parser.add_argument("--repeats", type=int, default=1, help="plans per configuration; the median is reported")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    rows = []
    for name in args.config or ["paper", "smoke"]:
        runs = [plan_once(CONFIGS[name]) for _ in range(args.repeats)]
        jobs = runs[0][0]
        seconds = statistics.median(s for _, s in runs)
        rows.append({"config": name, "jobs": jobs, "seconds": round(seconds, 2),
                     "ms_per_job": round(1000 * seconds / jobs, 2)})
        print(f"{name}: {jobs} jobs planned in {seconds:.1f} s ({1000 * seconds / jobs:.1f} ms per job)")
    paper = next((row for row in rows if row["config"] == "paper"), None)
    if paper is not None:
        verdict = "met" if paper["seconds"] <= GOAL_SECONDS else "NOT met"
        print(f"goal: the paper's plan within {GOAL_SECONDS} s: {verdict}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"goal_seconds": GOAL_SECONDS, "results": rows,
                                            "versions": package_versions(), "commit": git_commit(),
                                             "cpus": os.cpu_count()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A local single-node SLURM cluster for tests, and a helper to run Snakemake on it.

Use it from a test module (import it explicitly; pytest puts tests/ on sys.path):

    from slurm_fixtures import slurm_cluster  # noqa: F401  (the fixture)

    @pytest.mark.slurm
    def test_pipeline(slurm_cluster, tmp_path):
        result = slurm_cluster.run_snakemake(tmp_path, ["--snakefile", SNAKEFILE], timeout_s=900)

The session fixture starts the cluster with scripts/slurm_cluster.sh when it can (root and
Debian's apt) or when KCS_TEST_SLURM=1, and stops it at the end of the session if it started
it, failed tests included. Where it cannot start, tests using it are skipped with the reason,
except under CI=true or KCS_TEST_SLURM=1, where they fail instead. To leave them out, deselect
them: `pytest -m "not slurm"`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CLUSTER_SCRIPT = REPO_ROOT / "scripts" / "slurm_cluster.sh"
# The users' profile, used as is; CI only appends CI_ARGS.
USER_PROFILE = REPO_ROOT / "slurm"
# The test cluster has no slurmdbd, so the plugin's default status command (sacct) would fail
# and the run would hang; squeue works because slurm.conf keeps finished jobs for 300 s
# (MinJobAge >= 3 x the first status delay). A 10 s first delay keeps each DAG wave short.
CI_ARGS: tuple[str, ...] = (
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "10",
    "--slurm-keep-successful-logs",
)
CLUSTER_START_TIMEOUT_S = 300


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes"}


def _must_run() -> bool:
    return _truthy("CI") or _truthy("KCS_TEST_SLURM")


def _why_cannot_start() -> str | None:
    """A reason this machine cannot host the test cluster, or None if it looks able to."""
    if not sys.platform.startswith("linux"):
        return f"the local SLURM cluster needs Linux, not {sys.platform}"
    if os.geteuid() != 0:
        return "starting the local SLURM cluster needs root (it installs packages and starts daemons)"
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        return "neither SLURM nor apt-get (Debian packages) is available"
    return None


def _script(action: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(CLUSTER_SCRIPT), action],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
    )


def _cancel_all_jobs() -> None:
    """Cancel what a killed Snakemake run left queued (the test cluster runs nothing else)."""
    listing = subprocess.run(["squeue", "-h", "-o", "%A"], capture_output=True, text=True)
    if listing.stdout.split():
        subprocess.run(["scancel", *listing.stdout.split()], check=False)


def run_snakemake_on_slurm(
    workdir: Path | str,
    extra_args: Sequence[str] = (),
    timeout_s: float = 600,
    *,
    profile: Path | str = USER_PROFILE,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Run `snakemake --cores all --profile slurm` + CI_ARGS + extra_args in workdir.

    It is wrapped in `timeout -s KILL`, because a run whose status queries fail hangs and
    ignores TERM. Jobs of a killed run are cancelled. The combined output is returned (and
    kept in workdir/.snakemake/slurm-test-run.log); with check=True a non-zero exit raises
    AssertionError showing the output's tail.
    """
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    command = [
        "timeout", "-s", "KILL", str(int(timeout_s)),
        sys.executable, "-m", "snakemake",
        "--cores", "all", "--profile", str(profile), *CI_ARGS, *extra_args,
    ]  # fmt: skip
    env = dict(os.environ)
    # Jobs run `python -m snakemake` through sbatch --export=ALL: keep this venv first on PATH.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        command,
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log = workdir / ".snakemake" / "slurm-test-run.log"  # .snakemake/ is git-ignored
    log.parent.mkdir(exist_ok=True)
    log.write_text(result.stdout)
    killed = result.returncode == 137  # what `timeout -s KILL` returns
    if killed:
        _cancel_all_jobs()
    if check and result.returncode != 0:
        what = f"was killed after {int(timeout_s)}s" if killed else f"exited {result.returncode}"
        raise AssertionError(
            f"snakemake on SLURM {what} in {workdir}:\n$ {' '.join(command)}\n"
            + "\n".join(result.stdout.splitlines()[-60:])
        )
    return result


@dataclass(frozen=True)
class SlurmCluster:
    """A running local cluster: what a test needs to submit Snakemake workflows to it."""

    profile: Path
    ci_args: tuple[str, ...]
    start_seconds: float  # how long `slurm_cluster.sh start` took (0-ish if it was running)
    started_here: bool  # False when it was already running before the session

    def run_snakemake(
        self, workdir: Path | str, extra_args: Sequence[str] = (), timeout_s: float = 600, **kw
    ) -> subprocess.CompletedProcess:
        return run_snakemake_on_slurm(workdir, extra_args, timeout_s, profile=self.profile, **kw)


def _unavailable(reason: str) -> None:
    if _must_run():
        pytest.fail(f"the local SLURM cluster is required here (CI/KCS_TEST_SLURM) but: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    reason = _why_cannot_start()
    if reason:
        _unavailable(reason)
    was_running = _script("status").returncode == 0
    started = time.monotonic()
    try:
        result = _script("start", timeout_s=CLUSTER_START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _script("stop")
        _unavailable(f"scripts/slurm_cluster.sh start took over {CLUSTER_START_TIMEOUT_S}s")
    start_seconds = time.monotonic() - started
    if result.returncode != 0:
        if not was_running:
            _script("stop")
        _unavailable("scripts/slurm_cluster.sh start failed:\n" + result.stderr[-3000:])
    try:
        yield SlurmCluster(USER_PROFILE, CI_ARGS, start_seconds, started_here=not was_running)
    finally:
        if not was_running:
            stopped = _script("stop")
            assert stopped.returncode == 0, f"slurm_cluster.sh stop failed: {stopped.stderr}"
            assert _script("status").returncode == 3, "SLURM daemons still running after stop"

"""Snakemake script of rule train_mask: `kcs train`, resuming or restarting as the inputs say.

`kcs train` resumes a run directory from its last checkpoint, and refuses one whose checkpoint came
from other inputs. In the pipeline a rerun of this rule means one of two things:
- the job was killed, preempted or timed out (same inputs): resume from the checkpoint;
- the configuration or data changed (Snakemake saw it): the old checkpoints are stale, start over.
A fingerprint of the inputs, kept in the run directory, tells the two apart. The training log is
then copied to the rule's `curves` output (the run directory itself is not an output, so Snakemake
never deletes the checkpoints of a failed attempt).
"""

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

FINGERPRINT = "pipeline_inputs.sha256"


def fingerprint(sm) -> str:
    digest = hashlib.sha256()
    digest.update(f"model={sm.input.model}\nseed={sm.wildcards.seed}\n".encode())
    for name in ("config", "targetkg", "controlkg", "controlkg_val", "controllm"):
        for path in sm.input[name] if isinstance(sm.input[name], list) else [sm.input[name]]:
            digest.update(f"{name}={path}\n".encode())
            digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return digest.hexdigest()


def main(sm) -> int:
    run_dir = Path(sm.params.run_dir)
    stamp = run_dir / FINGERPRINT
    current = fingerprint(sm)
    with open(sm.log[0], "a") as log:
        # (Snakemake creates the empty folder of the outputs: only a started run can be stale.)
        started = (run_dir / "checkpoints").exists() or (run_dir / "train_log.csv").exists()
        if started and (not stamp.exists() or stamp.read_text().strip() != current):
            print(f"{run_dir}: the inputs changed since it was trained; starting over", file=log, flush=True)
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        stamp.write_text(current + "\n")
        command = ["kcs", "train", "--model", sm.input.model, "--targetkg", sm.input.targetkg,
                   "--controlkg", sm.input.controlkg, "--controlkg-val", sm.input.controlkg_val,
                   "--controllm", *([sm.input.controllm] if isinstance(sm.input.controllm, str) else sm.input.controllm),
                   "--config", sm.input.config, "--seed", str(sm.wildcards.seed), "--out", str(run_dir), "--no-progress"]
        print("$ " + " ".join(command), file=log, flush=True)
        status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
    if status == 0:
        shutil.copyfile(run_dir / "train_log.csv", sm.output.curves)
    return status


sys.exit(main(snakemake))  # noqa: F821 (snakemake injects `snakemake`)

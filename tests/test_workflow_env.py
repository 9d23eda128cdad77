"""The conda environment the rules declare (envs/kcs.yaml) pins exactly what pyproject.toml pins."""

from __future__ import annotations

import re
import tomllib

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from workflow_fixtures import REPO

ENV_FILE = REPO / "envs" / "kcs.yaml"


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _env() -> tuple[dict[str, str], list[str]]:
    env = yaml.safe_load(ENV_FILE.read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return {re.split(r"[=<>!~ ]", c, maxsplit=1)[0]: c for c in conda}, pip


def _normalised(requirements) -> dict[str, SpecifierSet]:
    parsed = [Requirement(r) for r in requirements]
    return {r.name.lower().replace("_", "-"): r.specifier for r in parsed}


def test_env_pins_the_project_dependencies_exactly():
    project = _normalised(_pyproject()["project"]["dependencies"])
    _, pip = _env()
    assert _normalised(pip) == project


def test_env_python_is_one_the_project_supports():
    conda, _ = _env()
    version = conda["python"].split("=", 1)[1]
    assert SpecifierSet(_pyproject()["project"]["requires-python"]).contains(f"{version}.0")
    assert "pip" in conda


def test_every_kcs_rule_declares_the_env():
    """Each rule that runs kcs (shell or script) declares envs/kcs.yaml, so `--sdm conda` covers it."""
    for path in sorted((REPO / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=rule )", path.read_text()):
            if block.startswith("rule ") and ("kcs " in block or "script:" in block):
                assert 'conda:\n        "../envs/kcs.yaml"' in block, f"{path.name}: {block.splitlines()[0]}"

"""Rewrite the sections of kcs/schemas/config.schema.json that the config models define.

Each step's settings are defined once, in kcs/config.py (keys, types, ranges, defaults, one comment
each); the pipeline's schema takes its `trainConfig`, `evalConfig` and `finetuneConfig` sections from
them. Run this after changing a config model; tests/test_workflow_config.py fails until it is run.

    python scripts/update_config_schema.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from kcs.config import config_schema_sections

SCHEMA = Path(__file__).resolve().parents[1] / "kcs" / "schemas" / "config.schema.json"


def updated(schema: dict) -> dict:
    schema = dict(schema)
    schema["$defs"] = {**schema["$defs"], **config_schema_sections()}
    return schema


def main() -> int:
    text = SCHEMA.read_text()
    new = json.dumps(updated(json.loads(text)), indent=2, ensure_ascii=False) + "\n"
    if new == text:
        print(f"{SCHEMA}: up to date")
        return 0
    SCHEMA.write_text(new)
    print(f"{SCHEMA}: sections {', '.join(config_schema_sections())} rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())

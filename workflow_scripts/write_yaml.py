"""Snakemake script: write the rule's `params.values` (a mapping) as a YAML file, atomically."""

import yaml

from kcs.atomic import write_text

header = "# Written by the kcs pipeline from the configuration; edit the configuration, not this file.\n"
with open(snakemake.log[0], "w") as log:  # noqa: F821 (snakemake injects `snakemake`)
    text = header + yaml.safe_dump(dict(snakemake.params.values), sort_keys=False)  # noqa: F821
    write_text(snakemake.output[0], text)  # noqa: F821
    log.write(f"wrote {snakemake.output[0]}\n")  # noqa: F821

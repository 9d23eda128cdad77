"""Snakemake script of rule prepare_model_hub: a hub model saved once as a local model folder.

Thin wrapper around transformers' from_pretrained / save_pretrained (fp32, the dtype kcs uses),
written atomically so an interrupted download leaves no half folder behind.
"""

import logging
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from kcs.atomic import atomic_dir, write_json
from kcs.provenance import provenance

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821 (snakemake injects `snakemake`)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)

hub_id = snakemake.params.hub_id  # noqa: F821
with atomic_dir(snakemake.output[0]) as folder:  # noqa: F821
    AutoModelForCausalLM.from_pretrained(hub_id, dtype=torch.float32).save_pretrained(folder)
    AutoTokenizer.from_pretrained(hub_id).save_pretrained(folder)
    write_json(folder / "kcs_source.json", provenance(model=hub_id, source="huggingface hub"))
logging.info("saved %s to %s", hub_id, snakemake.output[0])  # noqa: F821

"""kcs: discover, evaluate and remove knowledge-critical subnetworks in causal language models.

Reimplementation of Bayazit et al., "Discovering Knowledge-Critical Subnetworks in Pretrained
Language Models" (EMNLP 2024). See README.md for the pipeline and `kcs --help` for the CLI.
"""

__version__ = "0.1.0"

"""The pipeline's plan: what a configuration asks for and where each file lives, decided here so that
the Snakefile (rules/common.smk) only names files, targets and input functions.

- `paths`: one pattern per kind of result file (and per benchmark file)
- `checks`: what the JSON schema cannot check about a configuration
- `plan`: `Plan(config)`: the KG files a model uses, each rule's inputs, every target of the DAG
- `settings`: the settings file each data/model/selection step reads (`kcs ... --config FILE`)
- `resources`: memory and time requests scaled by model size
"""

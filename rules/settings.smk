# Settings files: what each step reads with `--config`, written from the configuration by kcs
# (kcs.config for training, evaluation and finetuning; kcs.pipeline.settings for the other steps).
# A step reruns when its settings change (Snakemake's params trigger).


rule train_config:
    # The hyper-parameters of one (model, variant) as a kcs YAML file; rewritten (and the runs
    # redone) only when the values change.
    output:
        PATHS.train_config,
    log:
        f"{LOGS}/train_config/{{model}}/{{variant}}.log",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    params:
        values=get_train_config_values,
    script:
        "../workflow_scripts/write_yaml.py"


rule evaluation_config:
    output:
        PATHS.eval_config,
    log:
        f"{LOGS}/evaluation_config.log",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    params:
        values=get_evaluation_config_values,
    script:
        "../workflow_scripts/write_yaml.py"


rule finetune_config:
    output:
        PATHS.finetune_config,
    log:
        f"{LOGS}/finetune_config/{{experiment}}.log",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    params:
        values=get_finetune_config_values,
    script:
        "../workflow_scripts/write_yaml.py"


rule step_settings:
    # The options of a data, model or selection step (kcs.pipeline.settings).
    output:
        PATHS.settings,
    log:
        f"{LOGS}/step_settings/{{step}}/{{name}}.log",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    params:
        values=get_step_settings,
    script:
        "../workflow_scripts/write_yaml.py"

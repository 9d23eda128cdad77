# Evaluation: the full model once per (model, TargetKG), then every mask (learned and random)
# against it: sparsity and TargetKG / ControlKG / ControlLM perplexities (docs/method.md 4). The
# ControlKG is its validation split, plus its held-out test split where it has one (controlkg_test
# in the metrics: facts that neither training nor any choice of recipe has seen).


rule evaluation_config:
    output:
        EVAL_CONFIG,
    log:
        f"{LOGS}/evaluation_config.log",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    params:
        values=get_evaluation_config_values,
    script:
        "../workflow_scripts/write_yaml.py"


rule evaluate_full:
    # Shared by every seed, variant and method of this (model, TargetKG).
    input:
        unpack(get_evaluation_data),
        model=get_model_dir,
        config=EVAL_CONFIG,
    output:
        FULL_METRICS,
    log:
        f"{LOGS}/evaluate_full/{{model}}/{{kg}}.log",
    benchmark:
        f"{BENCHMARKS}/evaluate_full/{{model}}/{{kg}}.tsv"
    conda:
        "../envs/kcs.yaml"
    threads: get_model_threads
    resources:
        mem_mb=get_model_mem_mb,
        runtime=get_model_runtime,
    params:
        controlkg_test=get_controlkg_test_arg,
    shell:
        "kcs evaluate-full --model {input.model} --targetkg {input.targetkg} --controlkg {input.controlkg}"
        "{params.controlkg_test} --controllm {input.controllm} --config {input.config} --out {output} > {log} 2>&1"


rule evaluate_mask:
    input:
        unpack(get_evaluation_data),
        model=get_model_dir,
        config=EVAL_CONFIG,
        mask=get_mask_to_evaluate,
        full=FULL_METRICS,
    output:
        METRICS,
    log:
        f"{LOGS}/evaluate_mask/{{model}}/{{kg}}/{{variant}}/seed{{seed}}/{{method}}.log",
    benchmark:
        f"{BENCHMARKS}/evaluate_mask/{{model}}/{{kg}}.{{variant}}.seed{{seed}}.{{method}}.tsv"
    conda:
        "../envs/kcs.yaml"
    threads: get_model_threads
    resources:
        mem_mb=get_model_mem_mb,
        runtime=get_model_runtime,
    params:
        controlkg_test=get_controlkg_test_arg,
        prefix_store=get_prefix_store_arg,
    shell:
        "kcs evaluate --model {input.model} --mask {input.mask} --targetkg {input.targetkg}"
        " --controlkg {input.controlkg}{params.controlkg_test} --controllm {input.controllm} --config {input.config}"
        " --full-metrics {input.full}{params.prefix_store} --out {output} > {log} 2>&1"

# Evaluation: the full model once per (model, TargetKG), then every mask (learned and random)
# against it: sparsity and TargetKG / ControlKG / ControlLM perplexities (docs/method.md 4). The
# ControlKG is its validation split, plus its held-out test split where it has one (controlkg_test
# in the metrics: facts that neither training nor any choice of recipe has seen).


rule evaluate_full:
    # Shared by every seed, variant and method of this (model, TargetKG).
    input:
        unpack(get_evaluation_data),
        model=get_model_dir,
        config=PATHS.eval_config,
    output:
        PATHS.full_metrics,
    log:
        f"{LOGS}/evaluate_full/{{model}}/{{kg}}.log",
    benchmark:
        BENCHMARK("evaluate_full")
    conda:
        "../envs/kcs.yaml"
    threads: get_model_threads
    resources:
        mem_mb=get_model_mem_mb,
        runtime=get_model_runtime,
    params:
        controlkg_test=get_optional_arg("--controlkg-test", "controlkg_test"),
        labels=get_labels,
    shell:
        "kcs evaluate-full --model {input.model} --targetkg {input.targetkg} --controlkg {input.controlkg}"
        "{params.controlkg_test} --controllm {input.controllm} --config {input.config} {params.labels} --out {output} > {log} 2>&1"


rule evaluate_mask:
    input:
        unpack(get_evaluation_data),
        model=get_model_dir,
        config=PATHS.eval_config,
        mask=get_mask_to_evaluate,
        full=PATHS.full_metrics,
    output:
        PATHS.metrics,
    log:
        f"{LOGS}/evaluate_mask/{{model}}/{{kg}}/{{variant}}/seed{{seed}}/{{method}}.log",
    benchmark:
        BENCHMARK("evaluate_mask")
    conda:
        "../envs/kcs.yaml"
    threads: get_model_threads
    resources:
        mem_mb=get_model_mem_mb,
        runtime=get_model_runtime,
    params:
        controlkg_test=get_optional_arg("--controlkg-test", "controlkg_test"),
        prefix_store=get_prefix_store_arg,
    shell:
        "kcs evaluate --model {input.model} --mask {input.mask} --targetkg {input.targetkg}"
        " --controlkg {input.controlkg}{params.controlkg_test} --controllm {input.controllm} --config {input.config}"
        " --full-metrics {input.full}{params.prefix_store} --out {output} > {log} 2>&1"

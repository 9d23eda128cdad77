# Checkpoints over training: every step mask a run kept (training keep_step_masks, bit-packed) is
# evaluated on validation data only (TargetKG, ControlKG validation split, ControlLM validation
# text), and, with checkpoint_selection rule 'best', one is chosen as the run's mask.


rule evaluate_steps:
    # The step masks are written by train_mask beside its mask (not declared outputs, so that a
    # failed attempt's checkpoints survive); the final mask stands for all of them here.
    input:
        unpack(get_steps_data),
        model=get_model_dir,
        config=PATHS.eval_config,
        mask=PATHS.mask,
    output:
        PATHS.steps,
    log:
        f"{LOGS}/evaluate_steps/{{model}}/{{kg}}/{{variant}}/seed{{seed}}.log",
    benchmark:
        BENCHMARK("evaluate_steps")
    conda:
        "../envs/kcs.yaml"
    threads: get_model_threads
    resources:
        mem_mb=get_model_mem_mb,
        runtime=get_model_runtime,
    params:
        step_masks=get_step_masks_glob,
        labels=get_labels,
        prefix_store=get_prefix_store_arg,
    shell:
        "kcs evaluate-steps --model {input.model} --targetkg {input.targetkg} --controlkg {input.controlkg}"
        " --controllm {input.controllm} --config {input.config} --out {output} {params.labels} --no-progress"
        "{params.prefix_store}"
        " {params.step_masks} > {log} 2>&1"


rule select_checkpoint:
    input:
        steps=PATHS.steps,
        settings=settings_file("select_checkpoint", "selection"),
    output:
        mask=PATHS.selected_mask,
        record=PATHS.selection_record,
    log:
        f"{LOGS}/select_checkpoint/{{model}}/{{kg}}/{{variant}}/seed{{seed}}.log",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    shell:
        "kcs select-checkpoint --steps {input.steps} --config {input.settings} --out {output.mask} --record {output.record} > {log} 2>&1"

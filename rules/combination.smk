# Subnetworks combined across seeds (the paper's union, intersection and majority of the seed masks
# of one model and TargetKG), each removed and evaluated like a single run, against a random
# subnetwork of the same size per matrix.


rule combine_seed_masks:
    input:
        get_seed_masks,
    output:
        random_or_temp(PATHS.combined_mask),
    log:
        f"{LOGS}/combine/{{model}}/{{kg}}/{{combination}}.log",
    benchmark:
        BENCHMARK("combine_seed_masks")
    conda:
        "../envs/kcs.yaml"
    resources:
        mem_mb=get_model_mem_mb,
    shell:
        "kcs combine-masks {input} --how {wildcards.combination} --out {output} > {log} 2>&1"


rule random_combined_mask:
    input:
        PATHS.combined_mask,
    output:
        random_or_temp(PATHS.combined_random_mask),
    log:
        f"{LOGS}/combine/{{model}}/{{kg}}/{{combination}}.random.log",
    conda:
        "../envs/kcs.yaml"
    resources:
        mem_mb=get_model_mem_mb,
    params:
        seed=get_first_seed,
    shell:
        "kcs random-mask --like {input} --seed {params.seed} --out {output} > {log} 2>&1"


use rule evaluate_mask as evaluate_combined_mask with:
    input:
        unpack(get_evaluation_data),
        model=get_model_dir,
        config=PATHS.eval_config,
        mask=get_combined_mask_to_evaluate,
        full=PATHS.full_metrics,
    output:
        PATHS.combined_metrics,
    log:
        f"{LOGS}/evaluate_combined/{{model}}/{{kg}}/{{combination}}/{{method}}.log",
    benchmark:
        BENCHMARK("evaluate_combined_mask")

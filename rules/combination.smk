# Subnetworks combined across seeds (the paper's union, intersection and majority of the seed masks
# of one model and TargetKG), each removed and evaluated like a single run, against a random
# subnetwork of the same size per matrix.


rule combine_seed_masks:
    input:
        get_seed_masks,
    output:
        random_or_temp(COMBINED_MASK),
    log:
        f"{LOGS}/combine/{{model}}/{{kg}}/{{combination}}.log",
    benchmark:
        f"{BENCHMARKS}/combine/{{model}}/{{kg}}.{{combination}}.tsv"
    conda:
        "../envs/kcs.yaml"
    resources:
        mem_mb=get_model_mem_mb,
    shell:
        "kcs combine-masks {input} --how {wildcards.combination} --out {output} > {log} 2>&1"


rule random_combined_mask:
    input:
        COMBINED_MASK,
    output:
        random_or_temp(COMBINED_RANDOM_MASK),
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
        config=EVAL_CONFIG,
        mask=get_combined_mask_to_evaluate,
        full=FULL_METRICS,
    output:
        COMBINED_METRICS,
    log:
        f"{LOGS}/evaluate_combined/{{model}}/{{kg}}/{{combination}}/{{method}}.log",
    benchmark:
        f"{BENCHMARKS}/evaluate_combined/{{model}}/{{kg}}.{{combination}}.{{method}}.tsv"

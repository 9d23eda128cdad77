# Mask training: one knowledge-critical subnetwork per (model, TargetKG, variant, seed).


rule train_mask:
    # `kcs train` resumes from <run dir>/checkpoints/last.safetensors: a killed, preempted or timed-out job
    # continues where it stopped on the retry; if the inputs changed (--restart-if-changed), the
    # run starts over. Only mask.safetensors (written last) and a copy of the log are outputs, so
    # Snakemake never deletes the checkpoints of a failed attempt.
    input:
        unpack(get_training_data),
        model=get_model_dir,
        config=PATHS.train_config,
    output:
        mask=learned_mask_output(PATHS.mask),
        curves=PATHS.curves,
    log:
        f"{LOGS}/train_mask/{{model}}/{{kg}}/{{variant}}/seed{{seed}}.log",
    benchmark:
        BENCHMARK("train_mask")
    conda:
        "../envs/kcs.yaml"
    threads: get_model_threads
    resources:
        gpu=1,
        mem_mb=get_train_mem_mb,
        runtime=get_train_runtime,
    params:
        run_dir=PATHS.run_dir,
        prefix_store=get_prefix_store_arg,
        labels=get_labels,
    shell:
        "kcs train --model {input.model} --targetkg {input.targetkg} --controlkg {input.controlkg}"
        " --controlkg-val {input.controlkg_val} --controllm {input.controllm} --config {input.config}{params.prefix_store}"
        " --seed {wildcards.seed} {params.labels} --out {params.run_dir} --no-progress --restart-if-changed > {log} 2>&1"
        " && cp {params.run_dir}/train_log.csv {output.curves}"


rule random_mask:
    # The random baseline: as many weights per matrix as the learned subnetwork (docs/method.md 4.4);
    # method random-N is draw N of the run's seed.
    input:
        LEARNED_MASK,
    output:
        random_or_temp(PATHS.random_mask),
    log:
        f"{LOGS}/random_mask/{{model}}/{{kg}}/{{variant}}/seed{{seed}}/{{method}}.log",
    benchmark:
        BENCHMARK("random_mask")
    wildcard_constraints:
        method=r"random(-[0-9]+)?",
    conda:
        "../envs/kcs.yaml"
    resources:
        mem_mb=get_model_mem_mb,
    params:
        draw=get_random_draw,
    shell:
        "kcs random-mask --like {input} --seed {wildcards.seed} --draw {params.draw} --out {output} > {log} 2>&1"


rule overlap_seeds:
    input:
        get_seed_masks,
    output:
        PATHS.overlap_seeds,
    log:
        f"{LOGS}/overlap/{{model}}/seeds/{{kg}}.log",
    benchmark:
        BENCHMARK("overlap_seeds")
    conda:
        "../envs/kcs.yaml"
    resources:
        mem_mb=get_model_mem_mb,
    shell:
        "kcs overlap {input} --out {output} > {log} 2>&1"


rule overlap_kgs:
    input:
        get_kg_masks,
    output:
        PATHS.overlap_kgs,
    log:
        f"{LOGS}/overlap/{{model}}/kgs/seed{{seed}}.log",
    benchmark:
        BENCHMARK("overlap_kgs")
    conda:
        "../envs/kcs.yaml"
    resources:
        mem_mb=get_model_mem_mb,
    shell:
        "kcs overlap {input} --out {output} > {log} 2>&1"

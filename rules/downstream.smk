# Downstream finetuning after removal (kcs finetune, docs/downstream.md): remove the subnetwork
# learned on a TargetKG whose facts are linked to multiple-choice questions, finetune, and compare
# the linked questions with the others, for the full model, the remaining model and a random
# removal of the same size.


rule build_mc_task:
    # The offline stand-in for CommonsenseQA: WordNet hypernymy questions, the removed facts linked.
    input:
        unpack(get_task_build_inputs),
        settings=settings_file("build_mc_task", "{experiment}"),
    output:
        directory(PATHS.built_task),
    log:
        f"{LOGS}/build_mc_task/{{experiment}}.log",
    conda:
        "../envs/kcs.yaml"
    shell:
        "kcs build-mc-task --linked-kg {input.linked} --config {input.settings} --wordnet-dir {input.wordnet}"
        " --out {output} > {log} 2>&1"


rule finetune:
    input:
        unpack(get_finetune_inputs),
    output:
        PATHS.finetune_result,
    log:
        f"{LOGS}/finetune/{{experiment}}/{{model}}/seed{{seed}}/{{start}}.log",
    benchmark:
        BENCHMARK("finetune")
    conda:
        "../envs/kcs.yaml"
    threads: get_model_threads
    resources:
        gpu=1,
        mem_mb=get_train_mem_mb,
        runtime=get_model_runtime,
    params:
        control=get_optional_arg("--control-kg", "control"),
        start=get_finetune_start_args,
        labels=get_labels,
    shell:
        "kcs finetune --model {input.model} --task {input.task} --linked-kg {input.linked}{params.control}{params.start}"
        " --config {input.config} --seed {wildcards.seed} --experiment {wildcards.experiment} {params.labels}"
        " --out {output} > {log} 2>&1"


rule downstream_summary:
    input:
        get_downstream_results(),
    output:
        csv=report(
            f"{TABLES}/downstream.csv",
            caption="../report/downstream.rst",
            category="Tables",
            labels={"table": "downstream"},
        ),
        markdown=f"{TABLES}/downstream.md",
        figure=report(
            f"{FIGURES}/downstream.png",
            caption="../report/downstream.rst",
            category="Figures",
            labels={"figure": "downstream"},
        ),
    log:
        f"{LOGS}/report/downstream_summary.log",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    shell:
        "kcs finetune-summary {input} --csv {output.csv} --markdown {output.markdown} --figure {output.figure} > {log} 2>&1"

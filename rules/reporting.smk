# Tables (CSV, Markdown, LaTeX) and figures for people, all in the Snakemake report
# (`snakemake --report report.html`). Each calls `kcs report ...`, which reads the model, TargetKG,
# variant, seed and method of each result from its content (its labels); only Snakemake's
# benchmark files are labelled by their path pattern.


rule collect_runs:
    input:
        get_metrics_files(),
    output:
        report(
            f"{TABLES}/runs.csv",
            caption="../report/runs.rst",
            category="Tables",
            labels={"table": "every evaluation"},
        ),
    log:
        f"{LOGS}/report/collect_runs.log",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    shell:
        "kcs report collect --out {output} {input} > {log} 2>&1"


rule main_table:
    input:
        f"{TABLES}/runs.csv",
    output:
        csv=report(
            f"{TABLES}/main.csv",
            caption="../report/main_table.rst",
            category="Tables",
            labels={"table": "main"},
        ),
        markdown=f"{TABLES}/main.md",
        latex=f"{TABLES}/main.tex",
    log:
        f"{LOGS}/report/main_table.log",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    params:
        models=get_model_order(),
    shell:
        "kcs report main-table --runs {input} --model-order {params.models}"
        " --csv {output.csv} --markdown {output.markdown} --latex {output.latex} > {log} 2>&1"


rule kg_table:
    input:
        f"{TABLES}/runs.csv",
    output:
        csv=report(
            f"{TABLES}/kgs.csv",
            caption="../report/kg_table.rst",
            category="Tables",
            labels={"table": "per TargetKG"},
        ),
        markdown=f"{TABLES}/kgs.md",
        latex=f"{TABLES}/kgs.tex",
    log:
        f"{LOGS}/report/kg_table.log",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    params:
        models=get_model_order(),
        kgs=get_kg_order(),
    shell:
        "kcs report kg-table --runs {input} --model-order {params.models} --kg-order {params.kgs}"
        " --csv {output.csv} --markdown {output.markdown} --latex {output.latex} > {log} 2>&1"


rule ablation_table:
    input:
        f"{TABLES}/runs.csv",
    output:
        csv=report(
            f"{TABLES}/ablations.csv",
            caption="../report/ablation_table.rst",
            category="Tables",
            labels={"table": "ablations"},
        ),
        markdown=f"{TABLES}/ablations.md",
        latex=f"{TABLES}/ablations.tex",
    log:
        f"{LOGS}/report/ablation_table.log",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    params:
        models=get_model_order(),
        variants=get_variant_order(),
    shell:
        "kcs report ablation-table --runs {input} --model-order {params.models} --variant-order {params.variants}"
        " --csv {output.csv} --markdown {output.markdown} --latex {output.latex} > {log} 2>&1"


rule compute_cost_table:
    input:
        get_benchmark_files(),
    output:
        csv=report(
            f"{TABLES}/compute_cost.csv",
            caption="../report/compute_cost.rst",
            category="Tables",
            labels={"table": "compute cost"},
        ),
        markdown=f"{TABLES}/compute_cost.md",
        latex=f"{TABLES}/compute_cost.tex",
    log:
        f"{LOGS}/report/compute_cost_table.log",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    params:
        layout=get_benchmark_layout,
        models=get_model_order(),
    shell:
        "kcs report compute-cost --layout '{params.layout}' --model-order {params.models}"
        " --csv {output.csv} --markdown {output.markdown} --latex {output.latex} {input} > {log} 2>&1"


rule density_figure:
    input:
        get_default_masks(),
    output:
        figure=report(
            f"{FIGURES}/density.png",
            caption="../report/density.rst",
            category="Figures",
            labels={"figure": "density"},
        ),
        csv=f"{FIGURES}/density.csv",
    log:
        f"{LOGS}/report/density_figure.log",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    params:
        models=get_model_order(),
    shell:
        "kcs report density --model-order {params.models}"
        " --out {output.figure} --csv {output.csv} {input} > {log} 2>&1"


rule delta_figure:
    input:
        f"{TABLES}/runs.csv",
    output:
        report(
            f"{FIGURES}/delta_ppl.png",
            caption="../report/delta_ppl.rst",
            category="Figures",
            labels={"figure": "perplexity change"},
        ),
    log:
        f"{LOGS}/report/delta_figure.log",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    params:
        models=get_model_order(),
    shell:
        "kcs report delta-figure --runs {input} --model-order {params.models} --out {output} > {log} 2>&1"


rule curves_figure:
    input:
        get_default_curves(),
    output:
        report(
            f"{FIGURES}/curves.png",
            caption="../report/curves.rst",
            category="Figures",
            labels={"figure": "training curves"},
        ),
    log:
        f"{LOGS}/report/curves_figure.log",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    params:
        models=get_model_order(),
    shell:
        "kcs report curves --model-order {params.models} --out {output} {input} > {log} 2>&1"


rule overlap_figure:
    input:
        get_overlap_files(),
    output:
        figure=report(
            f"{FIGURES}/overlap.png",
            caption="../report/overlap.rst",
            category="Figures",
            labels={"figure": "overlap"},
        ),
        csv=f"{FIGURES}/overlap.csv",
    log:
        f"{LOGS}/report/overlap_figure.log",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    params:
        models=get_model_order(),
    shell:
        "kcs report overlap --model-order {params.models}"
        " --out {output.figure} --csv {output.csv} {input} > {log} 2>&1"


rule collect_combined:
    input:
        get_combined_metrics_files(),
    output:
        f"{TABLES}/combined_runs.csv",
    log:
        f"{LOGS}/report/collect_combined.log",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    shell:
        "kcs report collect --out {output} {input} > {log} 2>&1"


rule combined_table:
    input:
        f"{TABLES}/combined_runs.csv",
    output:
        csv=report(
            f"{TABLES}/combined.csv",
            caption="../report/combined_table.rst",
            category="Tables",
            labels={"table": "seed-combined subnetworks"},
        ),
        markdown=f"{TABLES}/combined.md",
        latex=f"{TABLES}/combined.tex",
    log:
        f"{LOGS}/report/combined_table.log",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    params:
        models=get_model_order(),
    shell:
        "kcs report combined-table --runs {input} --model-order {params.models}"
        " --csv {output.csv} --markdown {output.markdown} --latex {output.latex} > {log} 2>&1"


rule combined_figure:
    input:
        f"{TABLES}/combined_runs.csv",
    output:
        report(
            f"{FIGURES}/combined.png",
            caption="../report/combined_figure.rst",
            category="Figures",
            labels={"figure": "seed-combined subnetworks"},
        ),
    log:
        f"{LOGS}/report/combined_figure.log",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    params:
        models=get_model_order(),
    shell:
        "kcs report combined-figure --runs {input} --model-order {params.models} --out {output} > {log} 2>&1"


rule paraphrase_table:
    input:
        f"{TABLES}/runs.csv",
    output:
        csv=report(
            f"{TABLES}/paraphrases.csv",
            caption="../report/paraphrase_table.rst",
            category="Tables",
            labels={"table": "paraphrases"},
        ),
        markdown=f"{TABLES}/paraphrases.md",
        latex=f"{TABLES}/paraphrases.tex",
    log:
        f"{LOGS}/report/paraphrase_table.log",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    params:
        models=get_model_order(),
        kgs=get_paraphrase_kg_order(),
    shell:
        "kcs report paraphrase-table --runs {input} --model-order {params.models} --kg-order {params.kgs}"
        " --csv {output.csv} --markdown {output.markdown} --latex {output.latex} > {log} 2>&1"


rule paraphrase_figure:
    input:
        f"{TABLES}/runs.csv",
    output:
        report(
            f"{FIGURES}/paraphrases.png",
            caption="../report/paraphrase_figure.rst",
            category="Figures",
            labels={"figure": "paraphrases"},
        ),
    log:
        f"{LOGS}/report/paraphrase_figure.log",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    params:
        models=get_model_order(),
    shell:
        "kcs report paraphrase-figure --runs {input} --model-order {params.models} --out {output} > {log} 2>&1"


rule structure_figure:
    # Per-head density, neurons whose every input weight is removed, attention vs MLP share:
    # learned subnetworks against their first random draw, drawn again in the job (exactly as the
    # random_mask rule draws it), so that the random mask files may be gone (keep_random_masks: false)
    # and adding a run redraws none of the others' files and reruns none of their evaluations.
    input:
        learned=get_default_masks(),
        models=get_structure_model_dirs(),
    output:
        figure=report(
            f"{FIGURES}/structure.png",
            caption="../report/structure_figure.rst",
            category="Figures",
            labels={"figure": "structure"},
        ),
        heads=f"{FIGURES}/structure_heads.csv",
        neurons=f"{FIGURES}/structure_neurons.csv",
        masks=f"{FIGURES}/structure_masks.csv",
        csv=report(
            f"{TABLES}/structure.csv",
            caption="../report/structure_table.rst",
            category="Tables",
            labels={"table": "structure"},
        ),
        markdown=f"{TABLES}/structure.md",
        latex=f"{TABLES}/structure.tex",
    log:
        f"{LOGS}/report/structure_figure.log",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    params:
        models=get_structure_model_args,
        order=get_model_order(),
    shell:
        "kcs report structure {params.models} --model-order {params.order} --out {output.figure} --csv {output.heads}"
        " --neuron-csv {output.neurons} --mask-csv {output.masks} --summary-csv {output.csv}"
        " --summary-markdown {output.markdown} --summary-latex {output.latex}"
        " --random-draw {input.learned} > {log} 2>&1"


rule steps_figure:
    input:
        get_steps_files(),
    output:
        figure=report(
            f"{FIGURES}/steps.png",
            caption="../report/steps.rst",
            category="Figures",
            labels={"figure": "checkpoints over training"},
        ),
        csv=f"{FIGURES}/steps.csv",
    log:
        f"{LOGS}/report/steps_figure.log",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    shell:
        "kcs steps-figure --out {output.figure} --csv {output.csv} {input} > {log} 2>&1"


rule completed_plan:
    # What this complete run was made of, written after every final output: the next invocation
    # prints what its configuration changes rerun (kcs.pipeline.changes).
    input:
        get_final_outputs(),
    output:
        PATHS.completed_plan,
    log:
        f"{LOGS}/report/completed_plan.log",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    params:
        values=get_plan_record,
    script:
        "../workflow_scripts/write_yaml.py"

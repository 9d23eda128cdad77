# Knowledge data: TargetKGs and ControlKGs (triplets, then sentences per model) and ControlLM text.
# Resources (WordNet, corpora, LAMA, CommonsenseQA) come from rules/resources.smk.


rule paper_kg:
    # One of the authors' KG files shipped with kcs (kcs/resources/paper_kgs), with its sentences.
    output:
        PAPER_KG,
    log:
        f"{LOGS}/paper_kg/{{paper_model}}/{{paper_kg}}.log",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    shell:
        "kcs data paper-kg --name {wildcards.paper_kg} --model {wildcards.paper_model} --out {output} > {log} 2>&1"


rule sample_wordnet_targetkg:
    input:
        wordnet=WORDNET_DIR,
    output:
        TARGETKG_TRIPLETS,
    log:
        f"{LOGS}/sample_targetkg/{{kg}}.log",
    wildcard_constraints:
        kg=_alternatives(kgs_of_kind("wordnet")),
    conda:
        "../envs/kcs.yaml"
    params:
        args=get_wordnet_sample_args,
    shell:
        "kcs data sample-wordnet {params.args} --wordnet-dir {input.wordnet} --out {output} > {log} 2>&1"


rule sample_conceptnet_targetkg:
    input:
        lama=LAMA_DIR,
    output:
        TARGETKG_TRIPLETS,
    log:
        f"{LOGS}/sample_targetkg/{{kg}}.log",
    wildcard_constraints:
        kg=_alternatives(kgs_of_kind("conceptnet")),
    conda:
        "../envs/kcs.yaml"
    params:
        args=get_conceptnet_sample_args,
    shell:
        "kcs data sample-conceptnet {params.args} --lama-dir {input.lama} --out {output} > {log} 2>&1"


rule wordnet_controlkg:
    # Random WordNet noun hypernym edges sharing no synset with the TargetKGs trained against it.
    input:
        unpack(get_wordnet_controlkg_inputs),
    output:
        train=_fill(CONTROLKG_TRIPLETS, controlkg="{controlkg}", split="train"),
        val=_fill(CONTROLKG_TRIPLETS, controlkg="{controlkg}", split="val"),
    log:
        f"{LOGS}/wordnet_controlkg/{{controlkg}}.log",
    wildcard_constraints:
        controlkg=_alternatives(controlkgs_of_kind("wordnet")),
    conda:
        "../envs/kcs.yaml"
    params:
        sizes=get_controlkg_sizes,
    shell:
        "kcs data wordnet-controlkg --exclude {input.exclude} {params.sizes} --wordnet-dir {input.wordnet}"
        " --out-train {output.train} --out-val {output.val} > {log} 2>&1"


rule wordnet_controlkg_test:
    # The held-out test split (test_size > 0): the same draw, continued after train and validation,
    # so it shares no head with them. Its own rule, so adding a test split leaves the training data
    # (and every mask trained on it) up to date; only the final evaluation reads it.
    input:
        unpack(get_wordnet_controlkg_inputs),
    output:
        _fill(CONTROLKG_TRIPLETS, controlkg="{controlkg}", split="test"),
    log:
        f"{LOGS}/wordnet_controlkg/{{controlkg}}.test.log",
    wildcard_constraints:
        controlkg=_alternatives(wordnet_controlkgs_with_test()),
    conda:
        "../envs/kcs.yaml"
    params:
        sizes=get_controlkg_sizes,
        test_size=get_controlkg_test_size,
    shell:
        "kcs data wordnet-controlkg --exclude {input.exclude} {params.sizes} --test-size {params.test_size}"
        " --wordnet-dir {input.wordnet} --out-test {output} > {log} 2>&1"


rule verbalise_targetkg:
    # The lowest-perplexity template per fact under the model being studied.
    input:
        unpack(get_verbalise_inputs),
    output:
        TARGETKG,
    log:
        f"{LOGS}/verbalise_targetkg/{{model}}/{{kg}}.log",
    benchmark:
        f"{BENCHMARKS}/verbalise_targetkg/{{model}}/{{kg}}.tsv"
    conda:
        "../envs/kcs.yaml"
    threads: get_model_threads
    resources:
        mem_mb=get_model_mem_mb,
        runtime=get_model_runtime,
    params:
        wordnet=get_wordnet_arg,
    shell:
        "kcs data verbalise --triplets {input.triplets} --model {input.model} {params.wordnet}"
        " --out {output} > {log} 2>&1"


rule verbalise_controlkg:
    input:
        unpack(get_verbalise_inputs),
    output:
        CONTROLKG,
    log:
        f"{LOGS}/verbalise_controlkg/{{model}}/{{controlkg}}.{{split}}.log",
    benchmark:
        f"{BENCHMARKS}/verbalise_controlkg/{{model}}/{{controlkg}}.{{split}}.tsv"
    wildcard_constraints:
        split="train|val|test",
    conda:
        "../envs/kcs.yaml"
    threads: get_model_threads
    resources:
        mem_mb=get_model_mem_mb,
        runtime=get_model_runtime,
    params:
        wordnet=get_wordnet_arg,
    shell:
        "kcs data verbalise --triplets {input.triplets} --model {input.model} {params.wordnet}"
        " --out {output} > {log} 2>&1"


rule controllm_text:
    input:
        get_controllm_inputs,
    output:
        CONTROLLM,
    log:
        f"{LOGS}/controllm/{{split}}.log",
    wildcard_constraints:
        split="train|val|test",
    conda:
        "../envs/kcs.yaml"
    params:
        args=get_controllm_args,
    shell:
        "kcs data controllm {params.args} --out {output} > {log} 2>&1"

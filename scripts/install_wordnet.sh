#!/usr/bin/env bash
# Install WordNet 3.0 (the paper's) offline for kcs: Debian's wordnet-base (+ wordnet-sense-index),
# laid out for nltk in resources/nltk_data/corpora/wordnet with the lexnames file nltk needs
# (written from the lexnames.5WN man page table). Idempotent; run as root on Debian 12 with the
# venv present. Online alternative: python -c "import nltk; nltk.download('wordnet')".
# Environment: PYTHON (default .venv/bin/python), KCS_RESOURCES (default resources/ of the checkout).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
python="${PYTHON:-$repo/.venv/bin/python}"
[ -x "$python" ] || python="$(command -v python3)"
dest="${KCS_RESOURCES:-$repo/resources}/nltk_data"
man_page=/usr/share/man/man5/lexnames.5WN.gz

if [ ! -f /usr/share/wordnet/data.noun ] || [ ! -f /usr/share/wordnet/index.sense ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq wordnet-base wordnet-sense-index >/dev/null
fi

workdir=""
trap '[ -n "$workdir" ] && rm -rf "$workdir"' EXIT
if [ ! -f "$man_page" ]; then
    # Minimal images drop man pages (dpkg path-exclude): take the page from the package itself.
    workdir="$(mktemp -d)"
    (cd "$workdir" && apt-get download wordnet-base >/dev/null && dpkg-deb -x wordnet-base_*.deb extracted)
    man_page="$workdir/extracted/usr/share/man/man5/lexnames.5WN.gz"
fi

"$python" -m kcs data install-wordnet --from /usr/share/wordnet --lexnames-man "$man_page" --to "$dest"

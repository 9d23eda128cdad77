"""CommonsenseQA: the downstream multiple-choice task, from the hub or from local files.

`read_csqa(path_or_dir, split)` is the one reader the downstream code imports. It returns a list
of `{"id", "question", "choices": [str], "labels": [str], "answer_index": int | None,
"question_concept": str | None}` plus any other top-level field of the row (answer_index None where the
split has no answers, e.g. the
original test file). It accepts:
- the original release's JSON Lines (`train_rand_split.jsonl`, `dev_rand_split.jsonl`,
  `test_rand_split_no_answers.jsonl`: `id`, `question{stem, question_concept, choices[{label,text}]}`,
  `answerKey`);
- the Hugging Face `tau/commonsense_qa` layout (`question` a string, `choices{label[], text[]}`),
  as JSON Lines or the hub's parquet files (`<split>-*.parquet`, also under `data/`);
- kcs's own normalised JSON Lines (what `kcs data csqa` writes).
A folder is searched for `<split>.jsonl`, the original file names, then parquet files.

Getting it: online through `datasets` (`load_csqa_hub`) or `download_csqa`, which fetches the
original files (https://s3.amazonaws.com/commensenseqa/..., `--base-url` or `KCS_CSQA_BASE_URL`
for a mirror) with pooch, each pinned in the lock file (`kcs.data.download`). Offline: local files
in one of the layouts above. The paper's CSQA TargetKGs tie each fact to a question id (`question_id`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from kcs.atomic import atomic_dir
from kcs.data.download import download_pinned
from kcs.data.paths import resources_dir
from kcs.errors import KcsError
from kcs.readers import iter_json_lines

log = logging.getLogger(__name__)

HUB_ID = "tau/commonsense_qa"
BASE_URL = "https://s3.amazonaws.com/commensenseqa"
ORIGINAL_FILES = {
    "train": "train_rand_split.jsonl",
    "validation": "dev_rand_split.jsonl",
    "test": "test_rand_split_no_answers.jsonl",
}
SPLITS = tuple(ORIGINAL_FILES)
_LAYOUT_KEYS = {"id", "question", "question_concept", "choices", "labels", "answer_index", "answerKey"}


def default_csqa_dir() -> Path:
    return resources_dir() / "csqa"


def normalise_row(row: Any, where: str) -> dict:
    """One question in any accepted layout -> the normalised dict (KcsError naming `where`)."""
    if not isinstance(row, dict):
        raise KcsError(f"{where}: expected a JSON object")
    qid = row.get("id")
    question = row.get("question")
    concept = row.get("question_concept")
    if isinstance(question, dict):  # original release
        concept = question.get("question_concept", concept)
        raw_choices = question.get("choices")
        question = question.get("stem")
        if not isinstance(raw_choices, list) or not all(isinstance(c, dict) for c in raw_choices):
            raise KcsError(f"{where}: question.choices must be a list of {{label, text}} objects")
        labels = [c.get("label") for c in raw_choices]
        choices = [c.get("text") for c in raw_choices]
    elif isinstance(row.get("choices"), dict):  # Hugging Face layout
        labels = list(row["choices"].get("label", []))
        choices = list(row["choices"].get("text", []))
    else:  # kcs normalised
        labels, choices = row.get("labels"), row.get("choices")
    if not isinstance(qid, str) or not qid:
        raise KcsError(f"{where}: field 'id' must be a non-empty string")
    if not isinstance(question, str) or not question.strip():
        raise KcsError(f"{where}: no question text (original: question.stem; Hugging Face/kcs: question)")
    if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
        raise KcsError(f"{where}: choices must be a non-empty list of strings")
    if not isinstance(labels, list) or len(labels) != len(choices) or not all(isinstance(x, str) for x in labels):
        raise KcsError(f"{where}: one string label per choice is needed")
    if "answer_index" in row:
        answer_index = row["answer_index"]
        if answer_index is not None and not (isinstance(answer_index, int) and 0 <= answer_index < len(choices)):
            raise KcsError(f"{where}: answer_index {answer_index!r} is not a choice index")
    else:
        key = row.get("answerKey")
        if key in (None, ""):
            answer_index = None
        elif key in labels:
            answer_index = labels.index(key)
        else:
            raise KcsError(f"{where}: answerKey {key!r} is not one of the labels {labels}")
    extra = {k: v for k, v in row.items() if k not in _LAYOUT_KEYS}  # e.g. linked_facts
    return {"id": qid, "question": question.strip(), "choices": choices, "labels": labels,
            "answer_index": answer_index, "question_concept": concept if isinstance(concept, str) else None, **extra}


def _find_file(folder: Path, split: str) -> Path:
    for name in (f"{split}.jsonl", ORIGINAL_FILES[split]):
        if (folder / name).is_file():
            return folder / name
    parquet = sorted(folder.glob(f"{split}-*.parquet")) + sorted(folder.glob(f"data/{split}-*.parquet"))
    if parquet:
        return parquet[0]
    raise KcsError(
        f"{folder}: no CommonsenseQA {split} file (looked for {split}.jsonl, {ORIGINAL_FILES[split]}, "
        f"{split}-*.parquet); get them with `kcs data download-csqa` or `kcs data csqa --source hub`"
    )


def read_csqa(path_or_dir: str | os.PathLike, split: str = "train") -> list[dict]:
    """CommonsenseQA questions from a file or folder, normalised (see module docstring)."""
    if split not in SPLITS:
        raise KcsError(f"unknown CommonsenseQA split '{split}'; use one of {', '.join(SPLITS)}")
    path = Path(path_or_dir)
    if path.is_dir():
        path = _find_file(path, split)
    elif not path.is_file():
        raise KcsError(f"{path}: CommonsenseQA file or folder not found")
    rows: list[dict] = []
    if path.suffix == ".parquet":
        import pandas as pd

        frame = pd.read_parquet(path)
        for index, record in enumerate(frame.to_dict(orient="records")):
            choices = record.get("choices")
            if isinstance(choices, dict):
                record["choices"] = {k: list(v) for k, v in choices.items()}
            rows.append(normalise_row(record, f"{path}: row {index}"))
    else:
        rows += [normalise_row(row, where) for where, row in iter_json_lines(path)]
    if not rows:
        raise KcsError(f"{path}: no questions")
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise KcsError(f"{path}: question ids repeat; each question must occur once")
    return rows


def load_csqa_hub(split: str) -> list[dict]:
    """The questions of `split` through `datasets` (needs the Hugging Face hub)."""
    try:
        import datasets

        rows = datasets.load_dataset(HUB_ID, split=split)
    except Exception as err:
        raise KcsError(
            f"could not load {HUB_ID} from the Hugging Face hub ({err.__class__.__name__}); offline, give a folder "
            f"with the CommonsenseQA files (--source DIR), e.g. one filled by `kcs data download-csqa`"
        ) from None
    return [normalise_row(dict(row), f"{HUB_ID}[{split}] row {i}") for i, row in enumerate(rows)]


def download_csqa(dest: str | os.PathLike | None = None, *, base_url: str | None = None,
                  lock: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Fetch the original CommonsenseQA files into `dest` (all or nothing, each verified)."""
    dest = Path(dest) if dest is not None else default_csqa_dir()
    if all((dest / name).is_file() for name in ORIGINAL_FILES.values()) and not force:
        log.info("CommonsenseQA already in %s (use --force to fetch again)", dest)
        return dest
    base_url = base_url or os.environ.get("KCS_CSQA_BASE_URL") or BASE_URL
    with atomic_dir(dest) as tmp:
        os.chmod(tmp, 0o755)
        for split, name in ORIGINAL_FILES.items():
            # A file kcs cannot read is neither installed nor pinned.
            download_pinned(f"commonsenseqa/{name}", f"{base_url.rstrip('/')}/{name}", tmp / name, lock=lock,
                            validate=lambda path, split=split: read_csqa(path, split))
    return dest

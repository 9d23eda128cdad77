"""ConceptNet from the LAMA probe: download, read, and TargetKG neighbourhoods around a concept.

The paper's ConceptNet TargetKGs (fruit, sun, swimming) are neighbourhoods of a focus concept in
the LAMA ConceptNet subset (docs/method.md 3.2). `download_lama` fetches LAMA's `data.zip`
(https://dl.fbaipublicfiles.com/LAMA/data.zip; `--url` or `KCS_LAMA_URL` for a mirror) with pooch,
pinned through the lock file (no checksum is published; see `kcs.data.download`), and keeps only
`ConceptNet/test.jsonl` under the destination folder.

`read_lama` reads LAMA rows (`sub`/`sub_label`, `pred`, `obj`/`obj_label`, `uuid`) as triplets;
repeated (sub, pred, obj) rows are merged (LAMA lists some facts more than once).

`sample_neighbourhood` builds a TargetKG as the authors' files suggest: a few head concepts
within `hops` undirected steps of the focus concept (the concept itself first), then their
outgoing facts taken round-robin over the heads until `size` facts; deterministic for a seed.
The ConceptNet ControlKG is the authors' (shipped in `kcs/resources/paper_kgs/conceptnet/`).
"""

from __future__ import annotations

import difflib
import logging
import os
import random
import shutil
import zipfile
from collections import defaultdict, deque
from pathlib import Path

from kcs.atomic import atomic_dir
from kcs.data.download import download_pinned
from kcs.data.paths import resources_dir
from kcs.data.triplets import Triplet
from kcs.errors import KcsError
from kcs.readers import iter_json_lines

log = logging.getLogger(__name__)

LAMA_URL = "https://dl.fbaipublicfiles.com/LAMA/data.zip"
LAMA_LOCK_NAME = "LAMA/data.zip"
CONCEPTNET_FILE = Path("ConceptNet") / "test.jsonl"


def default_lama_dir() -> Path:
    return resources_dir() / "lama"


def download_lama(dest: str | os.PathLike | None = None, *, url: str | None = None, sha256: str | None = None,
                  lock: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Fetch LAMA's data.zip, keep `<dest>/ConceptNet/test.jsonl`; returns that file."""
    dest = Path(dest) if dest is not None else default_lama_dir()
    if (dest / CONCEPTNET_FILE).is_file() and not force:
        log.info("LAMA ConceptNet already in %s (use --force to fetch again)", dest)
        return dest / CONCEPTNET_FILE
    url = url or os.environ.get("KCS_LAMA_URL") or LAMA_URL
    with atomic_dir(dest) as tmp:
        os.chmod(tmp, 0o755)
        archive = tmp / "data.zip"
        download_pinned(LAMA_LOCK_NAME, url, archive, sha256=sha256, lock=lock,
                        validate=lambda path: _conceptnet_member(path, url))
        with zipfile.ZipFile(archive) as zipped:
            (tmp / "ConceptNet").mkdir()
            with zipped.open(_conceptnet_member(archive, url)) as src, (tmp / CONCEPTNET_FILE).open("wb") as out:
                shutil.copyfileobj(src, out)
        archive.unlink()
        read_lama(tmp)  # refuse to install a file kcs cannot read
    return dest / CONCEPTNET_FILE


def _conceptnet_member(archive: Path, url: str) -> str:
    """The name of ConceptNet/test.jsonl inside LAMA's data.zip (KcsError if it is not that archive)."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = [m for m in zipped.namelist() if m.endswith("ConceptNet/test.jsonl")]
    except zipfile.BadZipFile:
        raise KcsError(f"{url}: not a zip archive; is it LAMA's data.zip?") from None
    if not members:
        raise KcsError(f"{url}: the archive has no ConceptNet/test.jsonl; is it LAMA's data.zip?")
    return members[0]


def _lama_file(path: Path) -> Path:
    if path.is_file():
        return path
    for candidate in (path / CONCEPTNET_FILE, path / "data" / CONCEPTNET_FILE, path / "test.jsonl"):
        if candidate.is_file():
            return candidate
    raise KcsError(
        f"{path}: no LAMA ConceptNet file (looked for {CONCEPTNET_FILE}, data/{CONCEPTNET_FILE}, test.jsonl); "
        "fetch it with `kcs data download-lama` (needs internet) or give --lama-dir"
    )


def read_lama(path: str | os.PathLike) -> list[Triplet]:
    """LAMA ConceptNet rows as (sub, pred, obj) triplets, duplicates merged, file order kept."""
    file = _lama_file(Path(path))
    triplets: dict[tuple[str, str, str], Triplet] = {}
    repeated = 0
    for where, row in iter_json_lines(file):
        if not isinstance(row, dict):
            raise KcsError(f"{where}: expected a JSON object")
        head = row.get("sub") or row.get("sub_label")
        tail = row.get("obj") or row.get("obj_label")
        relation = row.get("pred")
        if not all(isinstance(v, str) and v.strip() for v in (head, tail, relation)):
            raise KcsError(f"{where}: a LAMA row needs string fields sub (or sub_label), pred and obj (or obj_label)")
        key = (head.strip(), relation.strip(), tail.strip())
        if key in triplets:
            repeated += 1
            continue
        extra = {"lama_uuid": row["uuid"]} if isinstance(row.get("uuid"), str) else {}
        triplets[key] = Triplet(*key, extra=extra, where=where)
    if not triplets:
        raise KcsError(f"{file}: no LAMA rows")
    if repeated:
        log.info("%s: merged %d repeated LAMA rows", file, repeated)
    return list(triplets.values())


def neighbourhood(triplets: list[Triplet], concept: str, hops: int) -> dict[str, int]:
    """Concept -> undirected distance from `concept`, for every concept within `hops`."""
    adjacent: dict[str, set[str]] = defaultdict(set)
    for t in triplets:
        adjacent[t.head].add(t.tail)
        adjacent[t.tail].add(t.head)
    if concept not in adjacent:
        near = difflib.get_close_matches(concept, sorted(adjacent), n=5, cutoff=0.7)
        hint = f"; near matches: {', '.join(near)}" if near else ""
        raise KcsError(f"concept '{concept}' does not occur in the ConceptNet data{hint}")
    distance = {concept: 0}
    queue = deque([concept])
    while queue:
        node = queue.popleft()
        if distance[node] == hops:
            continue
        for other in sorted(adjacent[node]):
            if other not in distance:
                distance[other] = distance[node] + 1
                queue.append(other)
    return distance


def sample_neighbourhood(triplets: list[Triplet], concept: str, *, size: int = 40, hops: int = 2,
                         heads: int = 12, seed: int = 0) -> list[Triplet]:
    """A TargetKG of `size` facts whose heads lie within `hops` of `concept` (see module docstring)."""
    if size < 1 or heads < 1 or hops < 0:
        raise KcsError(f"need size >= 1, heads >= 1 and hops >= 0 (got {size}, {heads}, {hops})")
    distance = neighbourhood(triplets, concept, hops)
    outgoing: dict[str, list[Triplet]] = defaultdict(list)
    for t in triplets:
        if t.head in distance:
            outgoing[t.head].append(t)
    rng = random.Random(seed)
    others = sorted(h for h in outgoing if h != concept)
    chosen = ([concept] if concept in outgoing else []) + rng.sample(others, min(len(others), heads - (concept in outgoing)))
    available = sum(len(outgoing[h]) for h in chosen)
    if available < size:
        raise KcsError(
            f"only {available} facts leave the {len(chosen)} head concepts within {hops} hops of '{concept}'; "
            "lower --size or raise --heads/--hops"
        )
    pools = []
    for head in chosen:
        pool = sorted(outgoing[head], key=lambda t: t.key)
        rng.shuffle(pool)
        pools.append(pool)
    picked: list[Triplet] = []
    while len(picked) < size:
        for pool in pools:
            if pool and len(picked) < size:
                picked.append(pool.pop())
    return picked

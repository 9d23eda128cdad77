"""Downloads of files that publish no checksum: fetched with pooch, pinned in a lock file.

`fetch(url, dest)` is `pooch.retrieve`: the body goes to a temporary file beside `dest` and is
renamed only once complete, so a failed download never leaves a partial file; its errors become
KcsErrors naming the URL.

LAMA's `data.zip`, the CommonsenseQA files and the WikiText-2 parquet files publish no checksum
and none can be computed without downloading them, so kcs ships no invented values. Instead
`verify_and_pin` records the SHA-256 of the first verified download of each named artefact in a
lock file (`resources/downloads.lock.json`, see `kcs.data.paths.lock_file`); every later download
of that artefact must match it. An explicit `--sha256` wins and is recorded too. Delete the lock
entry to accept a new upstream file.
"""

from __future__ import annotations

import datetime
import logging
import os
from pathlib import Path
from typing import Callable

from kcs.atomic import write_json
from kcs.data.paths import lock_file
from kcs.errors import KcsError
from kcs.readers import read_json

log = logging.getLogger(__name__)


def fetch(url: str, dest: str | os.PathLike) -> Path:
    """Download `url` to `dest`, a path where nothing is yet (KcsError naming the URL on failure)."""
    import pooch
    import requests

    dest = Path(dest)
    pooch.get_logger().setLevel(logging.WARNING)  # its hint to pass known_hash= is for pooch users, not kcs's
    try:
        pooch.retrieve(url, known_hash=None, fname=dest.name, path=dest.parent)
    except requests.HTTPError as err:
        raise KcsError(f"download of {url} failed: HTTP {err.response.status_code} {err.response.reason}; "
                       "check the URL") from None
    except requests.exceptions.ChunkedEncodingError:  # the server closed the connection mid-body
        raise KcsError(f"download of {url} was interrupted; nothing was written, run the command again") from None
    except requests.RequestException as err:
        raise KcsError(f"download of {url} failed ({err.__class__.__name__}: {err}); check the URL and the network, "
                       "then run the command again") from None
    log.info("downloaded %s -> %s (%d bytes)", url, dest, dest.stat().st_size)
    return dest


def read_lock(path: str | os.PathLike | None = None) -> dict:
    path = Path(path) if path is not None else lock_file()
    if not path.is_file():
        return {}
    return read_json(path, "checksum lock file (a JSON object: artefact name -> entry; fix or delete it)")


def verify_and_pin(name: str, url: str, path: str | os.PathLike, *, sha256: str | None = None,
                   lock: str | os.PathLike | None = None, validate: Callable[[Path], object] | None = None) -> str:
    """Check a downloaded file against `sha256`, else its lock entry, else record it; returns its SHA-256.

    `validate(path)` checks the content (e.g. that it is the expected archive) and raises KcsError
    if not. A file that fails either check is deleted, and the lock entry (`name` -> {sha256,
    url, size, recorded}) is written only for a verified and valid file, so a failed run, or a
    server answering with an error page, never pins a bad file.
    """
    import pooch

    path, lock_path = Path(path), Path(lock) if lock is not None else lock_file()
    entries = read_lock(lock_path)
    pinned = entries.get(name, {}).get("sha256")
    if sha256 and pinned and sha256.lower() != pinned.lower():
        log.warning("%s: --sha256 %s overrides the lock file's %s", name, sha256, pinned)
    expected = (sha256 or pinned or "").lower() or None
    actual = pooch.file_hash(str(path))
    if expected is not None and actual != expected:
        path.unlink()
        raise KcsError(
            f"checksum mismatch for {url}: expected sha256 {expected}, got {actual}. The file was not kept. "
            f"If the upstream file changed on purpose, pass the new --sha256 or delete '{name}' from {lock_path}."
        )
    if validate is not None:
        try:
            validate(path)
        except KcsError as err:
            path.unlink()
            raise KcsError(str(err).replace(str(path), url)) from None  # name the URL, not the temporary file
    if expected is None:
        log.warning("%s: no checksum was pinned; recorded sha256 %s of this first download in %s "
                    "(later downloads must match it)", name, actual, lock_path)
    if pinned != actual:
        entries[name] = {
            "sha256": actual,
            "url": url,
            "size": path.stat().st_size,
            "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        write_json(lock_path, entries)
    return actual


def download_pinned(name: str, url: str, dest: str | os.PathLike, *, sha256: str | None = None,
                    lock: str | os.PathLike | None = None, validate: Callable[[Path], object] | None = None) -> str:
    """`fetch` then `verify_and_pin`: the named artefact at `url`, verified, in `dest`; returns its SHA-256."""
    return verify_and_pin(name, url, fetch(url, dest), sha256=sha256, lock=lock, validate=validate)

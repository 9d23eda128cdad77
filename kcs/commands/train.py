"""`kcs train`: learn a knowledge-critical subnetwork mask (resumes an unfinished RUN_DIR)."""

from kcs.commands import add_prefix_store_argument
from kcs.config import TrainConfig
from kcs.labels import add_label_option, parse_labels


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="learn a mask whose removal suppresses a TargetKG",
                              description=__doc__)
    p.add_argument("--model", required=True, help="hub id or local model folder")
    p.add_argument("--targetkg", required=True, help="KG file (JSON Lines) to suppress")
    p.add_argument("--controlkg", required=True, help="KG file whose predictions must be kept")
    p.add_argument("--controlkg-val", help="validation ControlKG (default: the first facts of --controlkg)")
    p.add_argument("--controllm", required=True, nargs="+", help="plain text file(s) whose LM distribution must be kept")
    p.add_argument("--out", required=True, help="run directory (mask.safetensors, train_log.csv, checkpoints/)")
    p.add_argument("--config", help="YAML of hyper-parameters (keys of kcs.config.TrainConfig)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--steps", type=int, help="override the config's number of steps")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda[:N]")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--log-every", type=int, default=100, metavar="N",
                   help="log a progress line (step, losses, rate, ETA) every N steps (default 100; 0: by time only)")
    p.add_argument("--log-seconds", type=float, default=60.0, metavar="T",
                   help="... or when T seconds have passed since the last line, whichever comes first (default 60)")
    p.add_argument("--restart-if-changed", action="store_true",
                   help="if RUN_DIR's checkpoint came from other arguments, discard it and start over "
                        "(default: refuse)")
    add_prefix_store_argument(p)
    add_label_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from kcs.training import train_mask

    config = TrainConfig.from_yaml(args.config, {"steps": args.steps})
    path = train_mask(args.model, args.targetkg, args.controlkg, args.controllm, args.out, config,
                      seed=args.seed, controlkg_val=args.controlkg_val, device=args.device,
                      progress=not args.no_progress, restart_if_changed=args.restart_if_changed,
                      log_every=args.log_every, log_seconds=args.log_seconds, prefix_store=args.prefix_store,
                      labels=parse_labels(args.label))
    print(path)
    return 0

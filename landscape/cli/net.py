"""Train real networks whose head is a deep UFM, hand each head to the UFM and analyse it there.

``landscape net`` trains S seeds of a backbone + deep UFM head (default preset ``digits-linear``:
an MLP on scikit-learn's handwritten digits with an L=3 linear head of width 64 and the paper's
UFM-style decay) by full-batch GD as one batch, measures every head (singular values per layer,
counts above 10⁻⁶, DNC1–DNC3, logit rank, structure label), takes (H₁, W₁…W_L) as a deep UFM start,
runs the UFM engines to a certified critical point and labels it, and writes
``runs/<name>-<time>/``: config.json, train.npz, study.sqlite, summary.json and report.html.
``--resume DIR`` continues a stopped run (training is kept once it finished).
"""
from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("net", help=__doc__.splitlines()[0], description=__doc__)
    p.add_argument("--config", metavar="FILE", help="net file (.toml), layered on the preset digits-linear")
    p.add_argument("--preset", metavar="NAME", help="an embedded net preset: digits-linear, digits-relu, digits-standard")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field, e.g. --set seeds=4 --set train.max_iter=5000 --set net.dataset=my.npz")
    p.add_argument("--out", metavar="DIR", help="results folder (default: runs/<name>-<YYYYmmdd-HHMMSS>)")
    p.add_argument("--resume", metavar="DIR", help="continue the net run in DIR with its stored configuration")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty --out folder that holds no study (its files of the same names are replaced)")
    p.add_argument("--no-progress", action="store_true", help="no progress lines")
    p.set_defaults(func=main)


def main(args) -> int:
    import time
    from pathlib import Path

    from ..core.validate import SpecError
    from ..io.results import FILES, check_results_folder, read_json
    from ..net.config import NetConfig, load_net
    from ..net.data import load_dataset
    from . import EXIT_INTERRUPTED, check_new_folder

    if args.resume:
        if args.config or args.overrides or args.out or args.preset:
            raise SpecError("--resume DIR continues the net run stored in DIR with its own configuration: "
                            "it takes no --config, --set, --out or --preset")
        out = Path(args.resume)
        if not (out / FILES["config"]).is_file():
            raise SpecError(f"--resume {out} is invalid: it holds no net run ({FILES['config']} is missing)")
        cfg = NetConfig.from_dict(read_json(out / FILES["config"]))
    else:
        cfg = load_net(args.config, args.overrides, preset=args.preset)
        out = Path(args.out) if args.out else Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        check_results_folder(out, force=args.force)
        if (out / FILES["config"]).exists() and not args.force:
            raise SpecError(f"{out} already holds a run: continue it with `landscape net --resume {out}` "
                            "or choose another --out")
        check_new_folder(out)
    # the dataset (file, labels, samples per class) before anything is written into the folder: a bad
    # one must not leave a config.json behind that refuses the corrected command
    load_dataset(cfg.dataset, cfg.n_train, cfg.n_test, seed=cfg.split_seed, standardise=cfg.standardise)
    from ..io.net_summary import NetSummary
    from ..net.run import run_net   # torch: only once the configuration, the dataset and the folder are good

    try:
        s = run_net(cfg, out, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"\ninterrupted: what finished is kept in {out}; continue with `landscape net --resume {out}`",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    net = NetSummary.from_json(s)
    accs = [x.test_accuracy for x in net.seeds if x.test_accuracy is not None]
    ranks = [x.logit_rank for x in net.seeds]
    print(f"{len(net.seeds)} seeds: test accuracy {min(accs):.3f}–{max(accs):.3f}; network logit ranks "
          + ", ".join(f"{r}×{ranks.count(r)}" for r in sorted(set(ranks))) if accs
          else f"{len(net.seeds)} seeds")
    print(f"UFM labels ({net.n_certified} certified, {net.n_uncertified} uncertified): "
          + ", ".join(f"{k} {v.count} ({100 * v.fraction:.0f}% [{100 * v.ci_low:.0f}, {100 * v.ci_high:.0f}])"
                      for k, v in net.labels.items()))
    print(f"wall time {s['timings']['total_s']:.1f} s; results: {out}")
    return 0

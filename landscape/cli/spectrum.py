"""Hessian spectrum of a stored point read by its structure: full spectrum, factor blocks, groups, density.

``landscape spectrum DIR POINT`` (or ``--all``) analyses the stored point(s) of the study in DIR
(:func:`landscape.analysis.spectrum.inspect_spectrum`): the full spectrum by dense
eigen-decomposition when the measured cost model allows (``--budget`` seconds), else the extreme
eigenvalues by block Lanczos and the density by stochastic Lanczos quadrature; the per-factor
diagonal blocks and every eigenvector's share on each factor; eigenvalue groups with their
multiplicity (zero modes, the bulk at λ, outliers); the Gauss–Newton and residual parts. Writes
DIR/spectra/point-<id>.json, stores the record in the database, and prints the groups; the study
report (``landscape report DIR``) then shows the figures.
"""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("spectrum", help=__doc__.splitlines()[0], description=__doc__)
    p.add_argument("dir", metavar="DIR", help="results folder of a study")
    p.add_argument("point", metavar="POINT", nargs="?", type=int, help="id of a distinct point")
    p.add_argument("--all", action="store_true", help="every distinct point of the study")
    p.add_argument("--budget", type=float, default=600.0, metavar="S",
                   help="largest predicted seconds of the dense path (default 600)")
    p.add_argument("--group-rtol", type=float, default=1e-6, help="relative tolerance of eigenvalue groups")
    p.set_defaults(func=main)


def main(args) -> int:
    from pathlib import Path

    from ..analysis.spectrum import check_group_rtol
    from ..core.validate import SpecError, check_number
    from ..io.results import DB_NAME, check_writable_folder

    check_number("--budget", args.budget)
    check_group_rtol(args.group_rtol)
    out = Path(args.dir)
    if not (out / DB_NAME).is_file():
        raise SpecError(f"{out} holds no study ({DB_NAME} is missing)")
    check_writable_folder(out, "the spectra")
    written = []
    try:
        return _spectra(args, out, written)
    except KeyboardInterrupt:
        import sys

        from . import EXIT_INTERRUPTED
        kept = ", ".join(map(str, written)) or "none"
        print(f"\ninterrupted: the spectra of finished points are kept (points {kept}); run the same command for the rest",
              file=sys.stderr)
        return EXIT_INTERRUPTED


def _spectra(args, out, written: list) -> int:
    """Analyse and store the spectra (``written`` hears every point id as it is stored)."""
    import time

    from ..analysis.spectrum import group_multiplicity_text, inspect_spectrum
    from ..core.validate import SpecError
    from ..io.results import DB_NAME, own_subfolder, write_json
    from ..io.store import StudyStore
    from ..analysis.settings import SpectrumSettings
    from ..study.config import StudyConfig, resolve_device

    with StudyStore.open(out / DB_NAME) as store:
        cfg = StudyConfig.from_dict(store.config)
        ids = [p.id for p in store.points()]
        if args.all == (args.point is not None):
            raise SpecError("give POINT or --all (one of them)")
        todo = ids if args.all else [args.point]
        for pid in todo:
            if pid not in ids:
                raise SpecError(f"POINT={pid} is invalid: the study has points {ids}")
        settings = SpectrumSettings.from_analysis(cfg.analysis, dense_budget_s=args.budget, group_rtol=args.group_rtol)
        _check_memory(cfg, store, todo, settings)   # every point, before anything is written
        own_subfolder(out, "spectra")
        for pid in todo:
            p = store.point(pid)
            t = time.perf_counter()
            rep = inspect_spectrum(cfg.model, p.params, settings, point_id=pid, device=resolve_device(cfg.device))
            rec = rep.to_dict()
            rec["timings"]["total_s"] = time.perf_counter() - t
            write_json(out / "spectra" / f"point-{pid}.json", rec)
            store.put_spectrum(pid, rec)
            written.append(pid)
            part = ("" if rep.method == "dense" else
                    f" (partial: {rep.eigenvalues.size} extreme eigenvalues of {rep.P}; multiplicities are lower bounds)")
            print(f"point {pid} ({p.label}, {p.kind}): {rep.method} spectrum of P={rep.P} in "
                  f"{rec['timings']['total_s']:.1f} s{part}; {len(rep.groups)} groups:")
            for g in rep.groups:
                extra = f" ({g['symmetry']} symmetry + {g['excess']} excess)" if g["kind"] == "zero" else ""
                shares = g.get("factor_shares")
                sh = (" shares " + " ".join(f"{k} {v:.2f}" for k, v in shares.items())) if shares else ""
                print(f"  {g['kind']:<8} {g['value']:>14.8g} {group_multiplicity_text(g)}{extra}{sh}")
            if rep.gauss_newton is not None:
                print(f"  Gauss–Newton part: min {rep.gauss_newton.min():.4g}; residual part: min {rep.residual.min():.4g}, "
                      f"max {rep.residual.max():.4g}")
            print(f"  written {out / 'spectra' / f'point-{pid}.json'}")
    return 0


def _check_memory(cfg, store, todo, settings) -> None:
    """Refuse (a ResourceError with the estimate) before any spectrum is computed or written when
    a point's dense symmetry space, or the dense path where ``dense_limit`` forces it, would exceed
    the memory budget (:func:`landscape.core.validate.memory_budget`)."""
    from ..analysis.settings import DENSE_SPECTRUM_MATRICES
    from ..analysis.symmetry import check_symmetry_memory
    from ..core.validate import check_memory

    spec = cfg.model.as_float64()
    P = spec.P
    if settings.dense_limit is not None and P <= settings.dense_limit:
        check_memory(f"analysis.dense_limit={settings.dense_limit}", DENSE_SPECTRUM_MATRICES * 8 * P * P,
                     f"the dense spectrum it forces at P={P:,} ({DENSE_SPECTRUM_MATRICES} dense {P:,} × {P:,} "
                     "matrices)")
    for pid in todo:
        check_symmetry_memory(spec, store.point(pid).params)

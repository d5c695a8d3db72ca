"""A study run, whole: what ``landscape run`` does, as one library call (:func:`run_study`).

:func:`landscape.study.run.run_study` computes a study into its database and writes the files
derived from it (config.json, study.sqlite, spectra.npz, tree.json, graph.graphml, summary.json).
A results folder is complete with two more steps: the structured Hessian spectra of the featured
points (:func:`landscape.study.summary.featured_spectra`: ``spectra/point-<id>.json`` and the
database) and ``report.html`` (:func:`landscape.viz.report.write_report`). The report belongs to
this layer (viz comes after study), so the function that writes the whole folder lives here:
``landscape run`` is a shell around :func:`run_study` (parse, load the configuration, check the
folder, run, print), and ``landscape.run_study`` is this function, so a notebook and the command
line write the same folder.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from ..study import run as study_run
from ..study.config import StudyConfig
from ..study.lambda0 import Lambda0Result, run_lambda0_study
from ..study.result import StudyResult
from ..study.summary import featured_spectra
from .report import write_report


class ReportInterrupted(KeyboardInterrupt):
    """Ctrl-C (a KeyboardInterrupt) while :func:`run_study` wrote the featured spectra or the
    report: the study itself is complete (its database and summary.json are written). ``result``:
    the :class:`~landscape.study.result.StudyResult` of the study, with ``report`` None; write the
    report with ``landscape report DIR`` or :func:`landscape.write_report`."""

    def __init__(self, result: StudyResult):
        super().__init__(f"interrupted while writing the report: the study is complete in {result.folder}")
        self.result = result


def run_study(cfg: StudyConfig, out_dir: str | Path, *, progress: bool | Callable[[dict], None] = True,
              executor=None, prefetch: bool | None = None) -> StudyResult:
    """Run (or resume) the study ``cfg`` into the results folder ``out_dir``, write the folder's
    featured spectra and ``report.html``, and return its :class:`~landscape.study.result.StudyResult`.

    The folder is the one ``landscape run --out DIR`` writes (config.json, study.sqlite,
    spectra.npz, spectra/, tree.json, graph.graphml, summary.json, report.html). If ``out_dir``
    already holds the same study, only what its database lacks is computed (a resumed run; a
    finished one is read back and its report rewritten); a different study raises
    :class:`~landscape.io.store.StoreError`. ``progress``, ``executor`` and ``prefetch``: as in
    :func:`landscape.study.run.run_study`. The result's ``timings`` are summary.json's and
    ``featured_spectra_s``, ``report_s``.

    A λ = 0 study (``[model] lambda = 0``) returns a :class:`~landscape.study.lambda0.Lambda0Result`
    instead (:mod:`landscape.study.lambda0`: config.json, lambda0.sqlite, summary.json,
    directions.json, directions.npz; no report page), resumed the same way: every finished batch
    of starts is committed to lambda0.sqlite, and the same call continues from them.

    Ctrl-C while the study runs raises KeyboardInterrupt (every committed unit is kept: run the
    same call again to continue); while the spectra or the report are written,
    :class:`ReportInterrupted` (a KeyboardInterrupt) carrying the finished study's result.
    """
    out = Path(out_dir)
    if cfg.model.unregularised:   # a λ = 0 study: its summary and files, no spectra, no report page
        return Lambda0Result(out, run_lambda0_study(cfg, out, progress=progress))
    given = {k: v for k, v in (("executor", executor), ("prefetch", prefetch)) if v is not None}
    summary = study_run.run_study(cfg, out, progress=progress, **given)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    try:
        featured_spectra(cfg, out, cfg.analysis.dense_budget_s)
        timings["featured_spectra_s"], t = time.perf_counter() - t, time.perf_counter()
        report = write_report(out)
        timings["report_s"] = time.perf_counter() - t
    except KeyboardInterrupt as exc:
        raise ReportInterrupted(StudyResult.from_summary(out, summary, timings=timings)) from exc
    return StudyResult.from_summary(out, summary, timings=timings, report=report)

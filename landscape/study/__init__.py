"""Studies: configuration, the run, summaries and statistics, the basin graph, descents from
saddles, transition states, sweeps and executors (continuation: :mod:`landscape.continuation`).

* :mod:`.config`: study files, presets, overrides, validation (:class:`StudyConfig`).
* :mod:`.run`: :func:`run_study` and :class:`~.run.StudyRun`, one call in progress (units,
  descent-faithful ends, saddle search, connections).
* :mod:`.points`: :class:`~.points.PointRegistry`, where every end θ becomes a distinct point
  (deduplicated modulo symmetry, analysed once, its kind, loss and store record), for the run,
  the transition-state search, the prefetch worker and ``landscape net``.
* :mod:`.work`: the pure units of work (trajectories, check, saddle search) and the saddle
  helpers the run and the prefetch worker share.
* :mod:`.summary`: :func:`summarise` and the derived files.
* :mod:`.stats`: Wilson intervals, basin fractions, Good–Turing, accumulation.
* :mod:`.graph`: basin graph and disconnectivity tree (networkx).
* :mod:`.descents`: unstable directions of a saddle and the ±ε descents.
* :mod:`.prefetch`: the saddle search and its first descents computed in a forked worker
  while the trajectories run (results keyed by content).
* :mod:`.transition_states`: transition states between minima (nudged elastic bands).
* :mod:`.sweep`, :mod:`.executors`: grids of studies; in-process and Dask executors (the
  interface in :mod:`.executor_base`, the λ batches in :mod:`.lambda_batch`).
"""

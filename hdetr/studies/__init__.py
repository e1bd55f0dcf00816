"""Studies: what is trained, and how its runs are run and read. Reports are written by ``hdetr.reports``,
which imports this package; no module here imports it.

- ``hdetr.studies.runs``: each run in its own process, finished ones kept, interrupted ones resumed,
  several at a time (``execute_runs``; ``python -m hdetr.studies.runs RUN_DIR`` is one run's process).
- ``hdetr.studies.launch``: a study's runs as local processes, torchrun or SLURM jobs (``launch_spec``,
  ``launch_study``), resumable, missing runs named.
- ``hdetr.studies.run_records``: what a finished run's folder says (``RunRecord``, ``load_record``: AP
  curve, s/step, assignment statistics), for the equal-iteration and equal-wall-time views.
- ``hdetr.studies.statistics``: seed statistics (mean, sd, 95 % intervals, Welch differences, short-run
  flags).
- ``hdetr.studies.rows``: ``ComparisonRow``, a variant's measured runs beside the paper's numbers: what a
  study hands to the report writers.
- ``hdetr.studies.variants``: ``Variant`` (overrides of a study's base config), ``variant_config``,
  ``study_requests``, ``study_rows``, ``run_study`` (train and evaluate a list of variants), ``curves``.
- ``hdetr.studies.scales``: what "smoke", "cpu" and "paper" scale mean for each table (``StudySpec``,
  ``table_study``, ``ablation_study``).
- ``hdetr.studies.measure``: where a report's numbers come from (in process, launched, or ``CHECKPOINTS``
  evaluated by ``hdetr.studies.from_checkpoints``, which also matches official checkpoints to the
  official README's numbers).
- ``hdetr.studies.regime``: the CPU-regime study's hypotheses and runs
  (``python -m hdetr.studies.regime run RUNS_DIR``; its report: ``hdetr.reports.regime``).
- ``hdetr.studies.demo``: the study of ``hdetr demo`` (``run_demo_study``; its report: ``hdetr.reports.demo``).
- ``hdetr.studies.scheme_costs``: the schemes' measured training / inference / memory costs;
  ``hdetr.studies.expected_costs``: the expected cost of a paper-scale run (derived from the paper's tables).
- ``hdetr.studies.reproduce``: execute the experiment notebooks with papermill (``hdetr reproduce``),
  never overwriting a finished report with a failed run.

The paper's reference numbers are ``hdetr.paper`` (``load_paper_tables()``, ``paper_table(name)`` ->
``PaperTable``, "approx" cells marked), below config and studies, so presets and reports read one source.
"""

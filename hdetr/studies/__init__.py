"""Reproducing the paper's tables: its reference numbers, the papermill runner, report writers.

- ``hdetr.paper`` (below config and experiments, so presets and reports read one source):
  ``load_paper_tables()``, ``paper_table(name)`` -> ``PaperTable``
  (the paper's tables as published, with "approx" cells marked).
- ``hdetr.reports.comparison``: ``ComparisonRow`` and ``write_report(...)``, which put the
  measured numbers (mean and spread over seeds) beside the paper's in markdown + JSON.
- ``hdetr.studies.scales``: what "smoke", "cpu" and "paper" scale mean for each table.
- ``hdetr.studies.variants``: train and evaluate a list of variants (``run_study``).
- ``hdetr.studies.runs``: each run in its own process, finished ones kept, interrupted ones
  resumed, several at a time (``execute_runs``).
- ``hdetr.studies.statistics`` / ``records``: seed statistics (mean, sd, 95 % intervals,
  Welch differences, short-run flags) and what a finished run's folder says (AP curve, s/step,
  assignment statistics), for the equal-iteration and equal-wall-time views.
- ``hdetr.studies.regime`` / ``regime_report``: the CPU-regime study
  (``reports/science/cpu_regime.md``).
- ``hdetr.studies.demo``: ``hdetr demo``.
- ``hdetr.studies.launch``: a study's runs as local processes, torchrun or SLURM jobs
  (``launch_spec``, ``launch_study``), resumable, missing runs named.
- ``hdetr.studies.measure``: where a report's numbers come from (in process, launched,
  or ``CHECKPOINTS`` evaluated by ``hdetr.studies.from_checkpoints``).
- ``hdetr.studies.scheme_costs``: the schemes' training / inference / memory costs;
  ``hdetr.studies.expected_costs``: the expected cost of a paper-scale run (derived).
- ``hdetr.reports.figures``: measured vs paper bar charts and training curves.
- ``hdetr.studies.reproduce``: execute the experiment notebooks with papermill
  (``hdetr reproduce``), never overwriting a finished report with a failed run.
"""

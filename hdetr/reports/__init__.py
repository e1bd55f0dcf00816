"""Report writers: markdown, JSON and figures from the studies' runs. They import ``hdetr.studies``
(rows, run records, statistics, the studies' definitions); no study imports them.

- ``hdetr.reports.comparison``: measured numbers (mean and spread over seeds) beside the paper's, in
  markdown + JSON with the command that regenerates them (``write_report``; ``write_study_report`` for a
  ``hdetr.studies.scales.StudySpec``, the runs' logs copied beside it; ``write_official_report`` for
  evaluated official checkpoints).
- ``hdetr.reports.regime``: ``reports/science/cpu_regime.md`` from the regime study's runs
  (``python -m hdetr.reports.regime RUNS_DIR OUT_DIR``).
- ``hdetr.reports.demo``: ``reports/demo/`` from the runs of ``hdetr demo`` (``write_demo_report``).
- ``hdetr.reports.costs``: Table 6's cost columns beside the paper's, from the benchmarks' files
  (``cost_lines``).
- ``hdetr.reports.figures``: measured vs paper bar charts, training curves, AP over steps or seconds.
"""

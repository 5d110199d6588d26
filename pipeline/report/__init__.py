"""A self-contained HTML report of the latest run under a pipeline root.

`write_report(pipeline_root, out)` reads the run back (`readers`: ML Metadata,
the TFMA output, the Trainer's TensorBoard events) and renders one HTML page
(`page`) whose charts are inline SVG (`plots`): it opens from disk, without a
server, a script or a network connection. With `evaluation.single_task_baseline`
the single-task Evaluator's output gives the MTL - STL table; with a query key
the fused score's ranking metrics get their own section; TFMA's confidence
intervals show in brackets.
"""

from pipeline.report.page import SECTIONS, gate_matrix, metrics_table, render, write_report
from pipeline.report.plots import bar_chart, heatmap, line_chart
from pipeline.report.readers import CalibrationBin, ReportData, collect

__all__ = [
  "SECTIONS",
  "CalibrationBin",
  "ReportData",
  "bar_chart",
  "collect",
  "gate_matrix",
  "heatmap",
  "line_chart",
  "metrics_table",
  "render",
  "write_report",
]

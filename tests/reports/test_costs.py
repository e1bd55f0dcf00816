"""The cost columns of Table 6 beside the paper's, from the benchmarks' files."""
import json

from hdetr.reports.costs import cost_lines


def test_cost_table_puts_measured_costs_beside_the_papers(tmp_path):
    assert cost_lines(tmp_path) == []
    rows = [{"row": r, "gflops_measured_no_aux_heads": 279.3 + 14 * ("1800" in r or r in ("hybrid_epoch", "hybrid_layer")),
             "gflops_full": 300.0} for r in ("baseline_300", "baseline_1800", "hybrid_branch", "hybrid_epoch", "hybrid_layer")]
    (tmp_path / "flops.json").write_text(json.dumps({"comparison": {"table6": rows}}))
    costs = [{"key": k, "train_seconds_per_iter": 0.2 * r, "train_ratio_to_baseline": r, "inference_images_per_s": 20.0,
              "peak_memory_mb": 900.0, "memory_kind": "cpu_peak_rss", "parameters": 12_920_616}
             for k, r in (("baseline", 1.0), ("hybrid_branch", 1.2), ("hybrid_epoch", 1.1), ("hybrid_layer", 1.15))]
    (tmp_path / "scheme_costs.json").write_text(json.dumps({"scale": "cpu", "device": "cpu", "results": {"fp32": costs}}))
    lines = cost_lines(tmp_path)
    branch = next(line for line in lines if line.startswith("| hybrid_branch"))
    # the paper's 80 (85 naive) minutes per epoch against the baseline's 65, beside the measured 1.20x
    assert "80 (85 naive) (1.23x)" in branch and "0.240 (1.20x)" in branch and "279.3 / 300.0" in branch
    assert "| hybrid_layer | 282 | 293.3 / 300.0 | 100 (1.54x) |" in "\n".join(lines)

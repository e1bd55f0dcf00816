"""What each hybrid scheme costs: training s/step against the baseline, inference images/s, memory, parameters."""
from __future__ import annotations

import pytest

from hdetr.studies.scales import ablation_study
from hdetr.studies.scheme_costs import scheme_costs
from hdetr.studies.variants import variant_config


@pytest.mark.slow
def test_scheme_costs_measure_every_scheme_against_the_baseline():
    spec = ablation_study("smoke")
    models = {v.key: variant_config(spec.base, v, 0).model.replace(msda_backend="torch")
              for v in spec.variants if v.key in ("baseline", "hybrid_branch")}
    costs = scheme_costs(models, batch_size=2, image_size=64, iterations=2, log=lambda _: None)
    assert [c.key for c in costs] == ["baseline", "hybrid_branch"]
    assert costs[0].train_ratio_to_baseline == 1.0 and costs[1].train_ratio_to_baseline > 0
    assert costs[1].queries_train == costs[1].queries_eval + models["hybrid_branch"].num_queries_one2many
    for cost in costs:
        assert cost.memory_kind == "cpu_peak_rss" and cost.peak_memory_mb > cost.process_floor_mb > 0
        assert cost.inference_images_per_s > 0 and cost.parameters >= cost.trainable_parameters > 0

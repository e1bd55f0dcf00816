"""What each experiment trains at each scale, and the paper rows it is compared with."""
from __future__ import annotations

import pytest

from hdetr.errors import UserError
from hdetr.studies.regime import regime_base
from hdetr.studies.rows import ComparisonRow
from hdetr.studies.scales import ablation_study, scheme_rows, scheme_variants, sweep_rows, table_study
from hdetr.studies.variants import Variant, variant_config
from hdetr.matching.plan import one2many_epochs


def test_coco_table_compares_baseline_and_branch_with_table1():
    assert table_study("coco", "cpu").seeds == (0, 1, 2) and table_study("lvis", "cpu").seeds == (0, 1, 2)
    spec = table_study("coco", "cpu", seeds=[0])
    assert "400 optimiser steps per run (equal iterations)" in spec.setup and spec.jobs == 2
    assert [v.key for v in spec.variants] == ["baseline", "hybrid_branch"]
    baseline, branch = (variant_config(spec.base, v, seed=3) for v in spec.variants)
    assert baseline.model.scheme == "baseline" and branch.model.scheme == "hybrid_branch"
    assert branch.model.num_queries_one2many > 0 and branch.train.seed == 3
    assert baseline.data.synthetic and baseline.data.kind == "coco"
    # equal steps, no time cap; the config of the regime study's runs, so they can be reused
    assert baseline.train.max_iters == 400 and baseline.train.max_wall_seconds == 0
    assert baseline.to_dict() == variant_config(regime_base(), spec.variants[0], 3).to_dict()
    assert baseline.data.synthetic_val_images == 300 and baseline.train.eval_max_images == 0
    assert spec.variants[0].paper["AP"].number == 47.0 and spec.variants[1].paper["AP"].number == 48.7
    assert spec.reference == spec.variants[0].label


def test_cpu_lvis_has_rare_common_and_frequent_categories_and_cpu_ablation_epochs_switch_inside_the_run():
    lvis = table_study("lvis", "cpu").base
    assert (lvis.data.kind, lvis.data.synthetic_classes, lvis.model.num_classes) == ("lvis", 100, 100)
    spec = ablation_study("cpu")
    epoch = variant_config(spec.base, next(v for v in spec.variants if v.key == "hybrid_epoch"), 0)
    steps_per_epoch = epoch.data.synthetic_images // epoch.train.batch_size
    assert steps_per_epoch * epoch.train.epochs == epoch.train.max_iters == spec.base.train.max_iters
    assert 0 < one2many_epochs(epoch.model, epoch.train.epochs) < epoch.train.epochs


def test_lvis_and_paper_scale():
    spec = table_study("lvis", "smoke")
    assert spec.base.data.kind == "lvis" and spec.base.model.num_classes == 256
    assert "APr" in spec.metrics and spec.variants[1].paper["AP"].number == 33.5
    with pytest.raises(UserError, match="DATA_ROOT"):
        table_study("coco", "paper")
    paper = table_study("coco", "paper", data_root="/data/coco")
    branch = variant_config(paper.base, paper.variants[1], 42)
    assert paper.base.data.root == "/data/coco" and paper.base.model.scheme == "baseline"
    assert (branch.model.num_queries_one2many, branch.model.k_one2many) == (1500, 6)
    with pytest.raises(UserError, match="SCALE='huge'"):
        table_study("coco", "huge")


def test_ablation_variants_and_sweep_points():
    spec = ablation_study("smoke", sweep_points=["k1", "lambda0.5"])
    keys = [v.key for v in spec.variants]
    assert keys == ["baseline", "hybrid_branch", "hybrid_epoch", "hybrid_layer", "group_detr", "baseline_equal_queries",
                    "k1", "lambda0.5"]
    runs = {v.key: variant_config(spec.base, v, 0) for v in spec.variants}
    configs = {key: run.model for key, run in runs.items()}
    assert configs["hybrid_layer"].one2many_layers + configs["hybrid_layer"].one2one_layers == configs["hybrid_layer"].dec_layers
    assert runs["hybrid_epoch"].train.epochs == 3
    # 2 of the 3 epochs one-to-many, the last one-to-one
    assert one2many_epochs(configs["hybrid_epoch"], runs["hybrid_epoch"].train.epochs) == 2
    assert (configs["k1"].k_one2many, configs["k1"].num_queries_one2many) == (1, 10)
    assert configs["lambda0.5"].lambda_one2many == 0.5
    assert spec.variants[6].paper == {"AP": 46.4} and spec.variants[7].paper == {"AP": 48.4}
    # Group DETR and the equal-queries control have the hybrid branch's n + T queries in all
    branch = configs["hybrid_branch"]
    assert configs["group_detr"].num_queries == configs["baseline_equal_queries"].num_queries == branch.num_queries
    assert configs["group_detr"].scheme == "group_detr" and configs["baseline_equal_queries"].scheme == "baseline"
    assert spec.variants[2].paper["AP"].number == 45.5  # Table 6, hybrid epoch
    with pytest.raises(UserError, match="sweep point 'x3'"):
        ablation_study("smoke", sweep_points=["x3"])
    with pytest.raises(UserError, match="needs DATA_ROOT"):
        ablation_study("paper")
    with pytest.raises(UserError, match="sweep point 'k9' at paper scale"):
        ablation_study("paper", data_root="/data/coco", sweep_points=["k9"])


def test_scheme_and_sweep_rows_take_each_tables_paper_numbers():
    spec = ablation_study("smoke", sweep_points=["k1"])
    rows = [ComparisonRow(v.label, [{"AP": 0.1}], paper=dict(v.paper)) for v in spec.variants]
    assert [r.label for r in scheme_rows(spec, rows)] == [v.label for v in spec.variants[:6]]
    assert scheme_variants(spec) == list(spec.variants[:6])
    sweeps = sweep_rows(spec, rows)
    assert [r.label for r in sweeps] == [spec.variants[i].label for i in (0, 1, 6)]
    # the sweeps' baseline is 47.0 (not Table 6's 43.7); the smoke branch has K=2
    assert [r.paper["AP"] for r in sweeps] == [47.0, 46.7, 46.4]


def test_variant_keys_name_folders():
    with pytest.raises(ValueError, match="names a folder"):
        Variant("a/b", "bad")


def test_cpu_ablations_have_group_detr_and_the_equal_queries_control_with_three_seeds():
    spec = ablation_study("cpu")
    assert spec.seeds == (0, 1, 2)
    variants = {v.key: v for v in spec.variants}
    group = variant_config(spec.base, variants["group_detr"], 0).model
    control = variant_config(spec.base, variants["baseline_equal_queries"], 0).model
    branch = variant_config(spec.base, variants["hybrid_branch"], 0).model
    assert (group.scheme, group.num_groups, group.num_queries_one2one) == ("group_detr", 4, 30)
    assert (control.scheme, control.num_queries_one2one, control.topk) == ("baseline", 120, spec.base.model.topk)
    assert group.num_queries == control.num_queries == branch.num_queries == 120
    # the control is printed beside Table 6's dagger row (1800 queries); Group DETR has no Table 6 row
    assert variants["baseline_equal_queries"].paper["AP"].number == 44.1 and variants["group_detr"].paper == {}


def test_paper_ablations_print_the_1800_query_baseline_beside_table6s_dagger_row():
    from hdetr.paper import paper_table

    spec = ablation_study("paper", data_root="/data/coco")
    row = next(v for v in spec.variants if v.key == "baseline_1800q")
    assert row.paper["AP"] == paper_table("schemes_table6").find(variant="Deformable-DETR (1800 queries)")["AP_12ep"]
    assert variant_config(spec.base, row, 42).model.num_queries_one2one == 1800


def test_table6_rows_at_paper_scale_are_presets():
    spec = ablation_study("paper", data_root="/datasets/coco")
    assert [v.key for v in spec.variants] == ["baseline", "baseline_1800q", "hybrid_branch", "hybrid_epoch",
                                              "hybrid_layer"]
    models = {v.key: variant_config(spec.base, v, 42).model for v in spec.variants}
    assert models["baseline_1800q"].num_queries_one2one == 1800 and models["baseline_1800q"].scheme == "baseline"
    assert (models["hybrid_branch"].num_queries_one2many, models["hybrid_branch"].k_one2many) == (1500, 6)
    assert {models[k].num_queries_one2one for k in ("hybrid_epoch", "hybrid_layer")} == {1800}
    assert all(not m.mixed_selection and not m.look_forward_twice and m.dropout == 0.1 for m in models.values())
    assert [float(v.paper["AP"].number) for v in spec.variants] == [43.7, 44.1, 45.9, 45.5, 45.6]
    assert variant_config(spec.base, spec.variants[0], 42).data.root == "/datasets/coco"

"""The supervision-plan grid of each scheme (layers x epochs)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from hdetr.config.model import ModelConfig
from hdetr.errors import UserError
from hdetr.viz import draw_plan, plan_grid, plan_markdown

SMALL = dict(dec_layers=3, num_queries_one2one=10)
EPOCHS = 3  # the training schedule drawn


def test_plan_grid_of_each_scheme():
    baseline = plan_grid(ModelConfig(scheme="baseline", num_queries_one2many=0, **SMALL), EPOCHS)
    assert baseline["layers"] == [0, 1, 2, -1] and baseline["epochs"] == [0, 1, 2]
    assert (baseline["kind"] == 0).all()

    branch = plan_grid(ModelConfig(scheme="hybrid_branch", num_queries_one2many=30, k_one2many=3,
                                   lambda_one2many=0.5, **SMALL), EPOCHS)
    assert (branch["kind"][:3] == 2).all() and (branch["kind"][3] == 0).all()  # encoder stays one-to-one
    assert branch["text"][0][0] == "1:1 + 1:K=3 x0.5 (T)"

    epoch_scheme = ModelConfig(scheme="hybrid_epoch", num_queries_one2many=0, k_one2many=4,
                               one2many_epoch_fraction=2 / 3, **SMALL)
    epoch = plan_grid(epoch_scheme, EPOCHS)
    assert epoch["kind"][:3].tolist() == [[1, 1, 0]] * 3
    assert plan_grid(epoch_scheme, 6)["kind"][0].tolist() == [1, 1, 1, 1, 0, 0]  # rho = 2/3 of the schedule given
    assert plan_grid(epoch_scheme, 6, epochs=[3, 4])["kind"][0].tolist() == [1, 0]
    with pytest.raises(UserError, match="plan_grid: give num_epochs"):
        plan_grid(epoch_scheme)
    with pytest.raises(UserError, match="scheme=hybrid_epoch needs num_epochs"):
        plan_grid(epoch_scheme, epochs=[0])

    layer = plan_grid(ModelConfig(scheme="hybrid_layer", num_queries_one2many=0, k_one2many=4,
                                  one2many_layers=2, one2one_layers=1, **SMALL), epochs=[0])
    assert layer["kind"][:, 0].tolist() == [1, 1, 0, 0]
    assert layer["text"][0][0] == "1:K=4"


def test_plan_markdown_and_figure():
    config = ModelConfig(scheme="hybrid_layer", num_queries_one2many=0, k_one2many=4, one2many_layers=2,
                         one2one_layers=1, two_stage=False, mixed_selection=False, **SMALL)
    md = plan_markdown(config, EPOCHS).splitlines()
    assert md[0] == "| layer | ep 1 | ep 2 | ep 3 |"
    assert md[2] == "| decoder 0 | 1:K=4 | 1:K=4 | 1:K=4 |" and md[-1] == "| decoder 2 | 1:1 | 1:1 | 1:1 |"
    ax = draw_plan(config, EPOCHS)
    image = ax.images[0].get_array()
    assert image.shape == (3, 1, 3)  # three equal epochs: one column
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1-3"]
    assert np.allclose(image[0, 0], [0x1F / 255, 0x77 / 255, 0xB4 / 255])  # one-to-many blue
    assert [t.get_text() for t in ax.texts] == ["1:K=4", "1:K=4", "1:1"]  # the scheme's own K
    plt.close("all")


def test_the_epoch_scheme_gets_one_column_per_phase():
    config = ModelConfig(scheme="hybrid_epoch", num_queries_one2many=0, k_one2many=10, **SMALL)
    ax = draw_plan(config, 12, legend=False)  # rho = 2/3 of 12 epochs
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1-8", "9-12"] and ax.get_legend() is None
    assert ax.images[0].get_array().shape[1] == 2 and ax.texts[0].get_text() == "1:K=10"
    plt.close("all")


def test_group_detr_plan_shows_its_groups():
    config = ModelConfig(scheme="group_detr", num_queries_one2many=0, num_groups=4, **SMALL)
    grid = plan_grid(config, epochs=[0, 1])
    assert (grid["kind"][:3] == 3).all() and (grid["kind"][3] == 0).all()  # the encoder: one set, one-to-one
    assert grid["text"][0][0] == "4 groups x 1:1" and grid["text"][3][0] == "1:1"
    assert plan_markdown(config, epochs=[0]).splitlines()[2] == "| decoder 0 | 4 groups x 1:1 |"
    ax = draw_plan(config, epochs=[0])
    assert np.allclose(ax.images[0].get_array()[0, 0], [0xFF / 255, 0x7F / 255, 0x0E / 255])  # orange: groups
    assert ax.texts[0].get_text() == "4 groups x 1:1"
    assert "one-to-one in each of G query groups" in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close("all")


def test_attention_mask_figure_is_the_block_matrix():
    import matplotlib

    matplotlib.use("Agg")
    from hdetr.config.model import ModelConfig
    from hdetr.viz.plan import draw_attention_mask

    config = ModelConfig(scheme="hybrid_branch", num_queries_one2one=4, num_queries_one2many=8)
    image = draw_attention_mask(config).images[0].get_array()
    assert image.shape == (12, 12)
    assert image[:4, :4].all() and image[4:, 4:].all() and not image[:4, 4:].any() and not image[4:, :4].any()
    unmasked = ModelConfig(scheme="hybrid_branch", num_queries_one2one=4, num_queries_one2many=8, mask_groups=False)
    assert draw_attention_mask(unmasked).images[0].get_array().all()
    groups = ModelConfig(scheme="group_detr", num_queries_one2one=3, num_queries_one2many=0, num_groups=3)
    ax = draw_attention_mask(groups)
    assert ax.images[0].get_array().sum() == 3 * 3 * 3 and [t.get_text() for t in ax.get_yticklabels()][2] == "group 2 (3)"

"""The model configuration: architecture, supervision scheme, matcher and loss weights.

Field names follow the official H-Deformable-DETR command-line flags wherever one
exists (``num_queries_one2one``, ``k_one2many``, ``dim_feedforward`` ...), so values
can be copied from the official config scripts. The supervision scheme lives here too,
because the number of queries the model builds depends on it.

Schemes (see ``hdetr.matching.plan``):

==============  =========================================  ==============================
scheme          queries                                    one-to-many supervision
==============  =========================================  ==============================
baseline        ``num_queries_one2one``                    none
hybrid_branch   ``num_queries_one2one`` + ``..._one2many``  extra group, all layers, weight
                                                           ``lambda_one2many``, K copies
hybrid_epoch    ``num_queries_one2one`` (one set of M)     all queries during the first
                                                           ``one2many_epoch_fraction`` of
                                                           the ``train.epochs`` epochs
hybrid_layer    ``num_queries_one2one`` (one set of N)     the first ``one2many_layers``
                                                           decoder layers; the last
                                                           ``one2one_layers`` one-to-one
group_detr      ``num_groups`` groups of                   none: every group is matched
                ``num_queries_one2one``                    one-to-one (Group DETR)
==============  =========================================  ==============================

Query groups are the sets whose queries attend only among themselves in the decoder's
self-attention: [n, T] in the hybrid branch, G x [n] in Group DETR, one group otherwise.
``mask_groups=False`` lifts that mask (every query attends to every other) while each
set keeps its own supervision.

The epoch scheme's schedule is the training schedule, ``train.epochs`` (``TrainConfig``): the
plan and the criterion take it as ``num_epochs`` (``hdetr.build_criterion(config, num_epochs=...)``).
Configs written before held a copy of it here, ``model.num_epochs``: ``ModelConfig.from_dict``
drops that key, and ``ExperimentConfig`` reading checks it against ``train.epochs`` first.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from hdetr.config.base import Config
from hdetr.errors import ConfigError

# A field configs held before: the epoch scheme's schedule, now train.epochs (one home for the fact).
LEGACY_NUM_EPOCHS = "num_epochs"
MOVED_NUM_EPOCHS = ("model.num_epochs is no longer a field: the epoch scheme's schedule is the training "
                    "schedule, train.epochs")


def refuse_num_epochs(changes: dict[str, Any], caller: str) -> None:
    """Refuse ``num_epochs`` among the keyword changes of ``caller`` (a model-config builder), saying where it went."""
    if LEGACY_NUM_EPOCHS in changes:
        raise ConfigError(f"{caller}(num_epochs=...): {MOVED_NUM_EPOCHS}; give it to the criterion instead: "
                          f"hdetr.build_criterion(config, num_epochs=...)")


def without_legacy_fields(data: dict[str, Any]) -> dict[str, Any]:
    """A saved model config's mapping without the fields it held before they moved (``num_epochs``)."""
    return {k: v for k, v in data.items() if k != LEGACY_NUM_EPOCHS}


SCHEMES = ("baseline", "hybrid_branch", "hybrid_epoch", "hybrid_layer", "group_detr")
BACKBONES = (
    "resnet50",
    "resnet101",
    "resnet18",
    "resnet18_half",  # ResNet-18 at half width (2.8 M parameters): the shipped CPU reference checkpoints
    "swin_tiny",
    "swin_small",
    "swin_base",
    "swin_large",
    "swin_large_window12",
)


@dataclasses.dataclass
class ModelConfig(Config):
    # --- backbone ---
    backbone: str = "resnet50"
    pretrained_backbone: str | None = None  # local file with ImageNet (or other) weights
    freeze_stem: bool = True  # official recipe: stem + layer1 frozen (they come pre-trained)
    dilation: bool = False
    drop_path_rate: float = 0.2  # Swin only: stochastic depth of the last block (0 for the first), train mode only
    # --- transformer ---
    num_classes: int = 91
    hidden_dim: int = 256
    nheads: int = 8
    enc_layers: int = 6
    dec_layers: int = 6
    dim_feedforward: int = 2048
    dropout: float = 0.0
    num_feature_levels: int = 4
    enc_n_points: int = 4
    dec_n_points: int = 4
    with_box_refine: bool = True
    two_stage: bool = True
    mixed_selection: bool = True
    look_forward_twice: bool = True
    aux_loss: bool = True
    msda_backend: str = "auto"  # auto | torch | cpu | cuda
    # --- supervision scheme (the paper) ---
    scheme: str = "hybrid_branch"
    num_queries_one2one: int = 300
    num_queries_one2many: int = 1500  # T, hybrid_branch only
    k_one2many: int = 6  # K, every hybrid scheme
    lambda_one2many: float = 1.0  # lambda, hybrid_branch
    one2many_epoch_fraction: float = 2.0 / 3.0  # rho, hybrid_epoch
    one2many_layers: int = 4  # L1, hybrid_layer
    one2one_layers: int = 2  # L2, hybrid_layer
    num_groups: int = 1  # G, group_detr: G groups of num_queries_one2one queries, each matched one-to-one
    mask_groups: bool = True  # False: one self-attention group over all queries (schemes with several groups)
    # --- matcher costs and loss weights (official defaults) ---
    set_cost_class: float = 2.0
    set_cost_bbox: float = 5.0
    set_cost_giou: float = 2.0
    cls_loss_coef: float = 2.0
    bbox_loss_coef: float = 5.0
    giou_loss_coef: float = 2.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    # --- inference ---
    topk: int = 100  # detections kept per image by post-processing

    @classmethod
    def from_dict(cls, data: dict[str, Any], owner: str | None = None) -> "ModelConfig":
        """As ``Config.from_dict``; a saved config's ``num_epochs`` (the epoch scheme's schedule, now
        ``train.epochs``) is dropped. ``ExperimentConfig`` reading checks it against ``train.epochs``
        before it gets here."""
        if isinstance(data, dict):
            data = without_legacy_fields(data)
        return super().from_dict(data, owner)

    def replace(self, **changes: Any) -> "ModelConfig":
        refuse_num_epochs(changes, "ModelConfig.replace")  # from_dict would drop it silently
        return super().replace(**changes)

    def query_group_sizes(self) -> list[int]:
        """Sizes of the query sets of a training step, the one-to-one set first: [n, T] (hybrid branch),
        [n] * G (Group DETR), [n] otherwise (the epoch and layer schemes' one set of M or N)."""
        n = self.num_queries_one2one
        if self.scheme == "group_detr":
            return [n] * self.num_groups
        return [n, self.num_queries_one2many] if self.num_queries_one2many > 0 else [n]

    def attention_groups(self) -> list[int]:
        """Self-attention groups of a training step: the query sets, or one group of all of them
        when ``mask_groups`` is off."""
        sizes = self.query_group_sizes()
        return sizes if self.mask_groups else [sum(sizes)]

    @property
    def num_queries(self) -> int:
        """Total decoder queries in training (one-to-one group first, then the others): n + T, or G * n."""
        return sum(self.query_group_sizes())

    def encoder_positions(self, height: int, width: int) -> int:
        """Encoder tokens (all feature levels) for a padded input of ``height`` x ``width`` pixels:
        the candidates two-stage selection takes its ``num_queries`` proposals from."""
        strides = [32] if self.num_feature_levels == 1 else [8, 16, 32]
        if self.dilation:
            strides[-1] //= 2
        while len(strides) < self.num_feature_levels:  # extra levels: stride-2 convs on the last map
            strides.append(2 * strides[-1])
        return sum(math.ceil(height / s) * math.ceil(width / s) for s in strides[:self.num_feature_levels])

    def validate(self) -> None:
        def bad(msg: str) -> ConfigError:
            return ConfigError(f"ModelConfig: {msg}")

        if self.scheme not in SCHEMES:
            raise bad(f"scheme={self.scheme!r} is not one of {', '.join(SCHEMES)}")
        if self.backbone not in BACKBONES:
            raise bad(f"backbone={self.backbone!r} is not one of {', '.join(BACKBONES)}")
        if self.msda_backend not in ("auto", "torch", "cpu", "cuda"):
            raise bad(f"msda_backend={self.msda_backend!r} is not one of auto, torch, cpu, cuda")
        for name in ("num_classes", "hidden_dim", "nheads", "dec_layers", "dim_feedforward",
                     "num_feature_levels", "enc_n_points", "dec_n_points", "num_queries_one2one", "topk"):
            if getattr(self, name) < 1:
                raise bad(f"{name}={getattr(self, name)} must be >= 1")
        if self.enc_layers < 0:
            raise bad(f"enc_layers={self.enc_layers} must be >= 0")
        if self.hidden_dim % self.nheads:
            raise bad(f"hidden_dim={self.hidden_dim} must be divisible by nheads={self.nheads}")
        if self.hidden_dim % 2:
            raise bad(f"hidden_dim={self.hidden_dim} must be even (sine position encoding)")
        if not 0.0 <= self.dropout < 1.0:
            raise bad(f"dropout={self.dropout} must be in [0, 1)")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise bad(f"drop_path_rate={self.drop_path_rate} must be in [0, 1)")
        if self.mixed_selection and not self.two_stage:
            raise bad("mixed_selection=True needs two_stage=True (queries are selected from proposals)")
        if self.two_stage and not self.with_box_refine:
            raise bad("two_stage=True needs with_box_refine=True (as in H-Deformable-DETR)")
        if self.look_forward_twice and not self.with_box_refine:
            raise bad("look_forward_twice=True needs with_box_refine=True")
        if self.num_queries_one2many < 0:
            raise bad(f"num_queries_one2many={self.num_queries_one2many} must be >= 0")
        if self.num_queries_one2many > 0 and self.scheme != "hybrid_branch":
            raise bad(
                f"num_queries_one2many={self.num_queries_one2many} (T > 0) only exists in the hybrid_branch "
                f"scheme, not {self.scheme}; set it to 0"
            )
        if self.scheme == "hybrid_branch" and self.num_queries_one2many == 0:
            raise bad("scheme=hybrid_branch needs num_queries_one2many (T) > 0")
        if self.scheme not in ("baseline", "group_detr") and self.k_one2many < 1:
            raise bad(f"k_one2many={self.k_one2many} (K) must be >= 1 with one-to-many supervision")
        if self.lambda_one2many < 0:
            raise bad(f"lambda_one2many={self.lambda_one2many} must be >= 0")
        if not 0.0 <= self.one2many_epoch_fraction <= 1.0:
            raise bad(f"one2many_epoch_fraction={self.one2many_epoch_fraction} (rho) must be in [0, 1]")
        if self.scheme == "hybrid_layer":
            if self.one2many_layers < 0 or self.one2one_layers < 1:
                raise bad(
                    f"hybrid_layer needs one2many_layers >= 0 and one2one_layers >= 1, "
                    f"got L1={self.one2many_layers}, L2={self.one2one_layers}"
                )
            if self.one2many_layers + self.one2one_layers != self.dec_layers:
                raise bad(
                    f"one2many_layers + one2one_layers (L1 + L2 = {self.one2many_layers} + "
                    f"{self.one2one_layers}) must equal dec_layers={self.dec_layers}"
                )
        if self.scheme == "group_detr" and self.num_groups < 2:
            raise bad(f"scheme=group_detr needs num_groups (G) >= 2, got num_groups={self.num_groups}")
        if self.scheme != "group_detr" and self.num_groups != 1:
            raise bad(f"num_groups={self.num_groups} (G) only exists in the group_detr scheme, not {self.scheme}; "
                      f"set it to 1")
        if not self.mask_groups and len(self.query_group_sizes()) == 1:
            raise bad(f"mask_groups=False needs several query groups (hybrid_branch, group_detr), but "
                      f"scheme={self.scheme} has one; set mask_groups=True")
        if self.focal_alpha < 0 or self.focal_alpha > 1:
            raise bad(f"focal_alpha={self.focal_alpha} must be in [0, 1]")


# The paper's scheme settings (Table 6, R50): each scheme names only what differs from ModelConfig's defaults
# (the hybrid branch, n=300, T=1500, K=6, lambda=1). Factories below and the preset grid read them.
PAPER_SCHEMES: dict[str, dict] = {
    "baseline": {"scheme": "baseline", "num_queries_one2many": 0},
    "hybrid_branch": {"scheme": "hybrid_branch"},
    "hybrid_epoch": {"scheme": "hybrid_epoch", "num_queries_one2one": 1800, "num_queries_one2many": 0,
                     "k_one2many": 10, "one2many_epoch_fraction": 2.0 / 3.0},
    "hybrid_layer": {"scheme": "hybrid_layer", "num_queries_one2one": 1800, "num_queries_one2many": 0,
                     "k_one2many": 10, "one2many_layers": 4, "one2one_layers": 2},
}

# Group DETR (Chen et al., ICCV 2023, arXiv 2207.13085) at paper scale: G=11 groups of the baseline's n=300
# queries. G=11 is the group count Group DETR is reported to use for its DETR variants; it was not confirmed
# against the paper text here, so check the paper before quoting it. Not one of H-DETR's schemes (no Table 6
# row, no paper grid): its one preset is coco_r50_group_detr_12ep (hdetr.config.presets).
GROUP_DETR_SCHEME: dict = {"scheme": "group_detr", "num_queries_one2many": 0, "num_groups": 11}


def _scheme_model(scheme: dict, changes: dict, factory: str) -> ModelConfig:
    refuse_num_epochs(changes, factory)
    return ModelConfig(**{**scheme, **changes})


def baseline(**changes) -> ModelConfig:
    """Two-stage Deformable-DETR with the paper's tricks, 300 one-to-one queries."""
    return _scheme_model(PAPER_SCHEMES["baseline"], changes, "baseline")


def hybrid_branch(**changes) -> ModelConfig:
    """The paper's default H-Deformable-DETR: n=300, T=1500, K=6, lambda=1."""
    return _scheme_model(PAPER_SCHEMES["hybrid_branch"], changes, "hybrid_branch")


def hybrid_epoch(**changes) -> ModelConfig:
    """One set of M=1800 queries, K=10 copies during the first rho=2/3 of the epochs."""
    return _scheme_model(PAPER_SCHEMES["hybrid_epoch"], changes, "hybrid_epoch")


def hybrid_layer(**changes) -> ModelConfig:
    """One set of N=1800 queries, K=10 copies on the first L1=4 layers, one-to-one on the last L2=2."""
    return _scheme_model(PAPER_SCHEMES["hybrid_layer"], changes, "hybrid_layer")


def group_detr(**changes) -> ModelConfig:
    """Group DETR: G=11 groups of n=300 queries, each matched one-to-one on every layer."""
    return _scheme_model(GROUP_DETR_SCHEME, changes, "group_detr")

"""hdetr.outputs.ModelOutput: the typed output, its official-dict view and the round trip."""
import pytest
import torch

from hdetr.errors import UserError
from hdetr.outputs import ENCODER_LAYER, ONE2MANY, ONE2ONE, QUERY_GROUPS, ModelOutput

L, B, N, T, S, C = 3, 2, 4, 6, 5, 7


def _output(has_aux=True, encoder=True, layers=L):
    torch.manual_seed(0)
    return ModelOutput(
        logits={ONE2ONE: torch.randn(layers, B, N, C), ONE2MANY: torch.randn(layers, B, T, C)},
        boxes={ONE2ONE: torch.rand(layers, B, N, 4), ONE2MANY: torch.rand(layers, B, T, 4)},
        enc_logits=torch.randn(B, S, C) if encoder else None,
        enc_boxes=torch.rand(B, S, 4) if encoder else None,
        has_aux=has_aux,
    )


def test_reads_as_the_official_dict():
    out = _output()
    assert list(out.keys()) == ["pred_logits", "pred_boxes", "pred_logits_one2many", "pred_boxes_one2many",
                                "aux_outputs", "aux_outputs_one2many", "enc_outputs"]
    assert torch.equal(out["pred_logits"], out.logits[ONE2ONE][-1])
    assert torch.equal(out["pred_boxes_one2many"], out.boxes[ONE2MANY][-1])
    assert len(out["aux_outputs"]) == L - 1 and "aux_outputs" in out
    assert torch.equal(out["aux_outputs_one2many"][1]["pred_boxes"], out.boxes[ONE2MANY][1])
    assert torch.equal(out["enc_outputs"]["pred_logits"], out.enc_logits)
    assert dict(out.items()).keys() == out.to_official_dict().keys()
    plain = _output(has_aux=False, encoder=False, layers=1)
    assert "aux_outputs" not in plain and "enc_outputs" not in plain and plain.get("aux_outputs") is None
    with pytest.raises(KeyError):
        plain["aux_outputs"]


def test_layer_gives_one_layer_or_the_encoder_proposals():
    out = _output()
    assert torch.equal(out.layer(ONE2ONE, 0)["pred_logits"], out.logits[ONE2ONE][0])
    assert torch.equal(out.layer(ONE2MANY, ENCODER_LAYER)["pred_boxes"], out.enc_boxes)
    assert out.last(ONE2MANY)["pred_boxes"].shape == (B, T, 4)
    with pytest.raises(UserError, match=f"layer={L} is out of range"):
        out.layer(ONE2ONE, L)
    with pytest.raises(UserError, match="group='both'"):
        out.layer("both", 0)
    with pytest.raises(UserError, match="encoder proposals"):
        _output(encoder=False).layer(ONE2ONE, ENCODER_LAYER)


@pytest.mark.parametrize("has_aux, encoder, layers", [(True, True, L), (False, False, 1), (True, False, 1)])
def test_the_official_dict_round_trip_is_exact(has_aux, encoder, layers):
    out = _output(has_aux, encoder, layers)
    back = ModelOutput.from_official_dict(out.to_official_dict())
    assert back.has_aux == out.has_aux and list(back.keys()) == list(out.keys())
    for group in QUERY_GROUPS:
        assert torch.equal(back.logits[group], out.logits[group]) and torch.equal(back.boxes[group], out.boxes[group])
    assert (back.enc_logits is None) == (not encoder)
    assert ModelOutput.from_official_dict(out) is out


def test_a_dict_without_the_one2many_group_reads_as_an_empty_group():
    out = ModelOutput.from_official_dict({"pred_logits": torch.zeros(B, N, C), "pred_boxes": torch.zeros(B, N, 4)})
    assert out.logits[ONE2MANY].shape == (1, B, 0, C) and out["pred_boxes_one2many"].shape == (B, 0, 4)
    with pytest.raises(UserError, match="'pred_logits' and 'pred_boxes'"):
        ModelOutput.from_official_dict({"pred_logits": torch.zeros(B, N, C)})


def test_float_and_to_convert_every_tensor():
    out = _output().map_tensors(lambda t: t.to(torch.bfloat16))
    assert out.float().logits[ONE2MANY].dtype == torch.float32
    assert out.float()["enc_outputs"]["pred_boxes"].dtype == torch.float32
    assert out.to(torch.float64)["aux_outputs"][0]["pred_logits"].dtype == torch.float64
    assert out.float().has_aux


def test_it_is_a_read_only_dict_that_pickles_and_flattens():
    import copy
    import pickle

    import torch.utils._pytree as pytree

    out = _output()
    assert isinstance(out, dict) and dict(out).keys() == out.to_official_dict().keys()
    with pytest.raises(TypeError, match="read-only"):
        out["pred_logits"] = torch.zeros(1)
    back = pickle.loads(pickle.dumps(out))
    assert torch.equal(back["aux_outputs"][0]["pred_boxes"], out["aux_outputs"][0]["pred_boxes"])
    assert copy.deepcopy(out).has_aux
    leaves, spec = pytree.tree_flatten(out)
    assert len(leaves) == 6 and all(torch.is_tensor(t) for t in leaves)
    again = pytree.tree_unflatten([t * 2 for t in leaves], spec)
    assert isinstance(again, ModelOutput) and torch.equal(again["pred_logits"], out["pred_logits"] * 2)

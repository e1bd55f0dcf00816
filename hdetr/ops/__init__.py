"""Multi-scale deformable attention: one function, three backends (cuda, cpu, torch)."""
from hdetr.ops.reference import ms_deform_attn_reference


def multi_scale_deformable_attention(value, spatial_shapes, level_start_index, sampling_locations,
                                     attention_weights, *, backend="auto"):
    """Temporary dispatcher (the op issue replaces it with cuda/cpu/torch dispatch)."""
    return ms_deform_attn_reference(value, spatial_shapes, sampling_locations, attention_weights)


__all__ = ["multi_scale_deformable_attention", "ms_deform_attn_reference"]

"""hdetr: H-DETR (DETRs with Hybrid Matching, CVPR 2023) in PyTorch."""
__version__ = "0.1.0"

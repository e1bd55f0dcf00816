"""Tests of hdetr.checkpoints."""

"""Tests of hdetr.viz."""

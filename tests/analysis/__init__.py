"""Tests of hdetr.analysis."""

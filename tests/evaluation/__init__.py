"""Tests of hdetr.evaluation."""

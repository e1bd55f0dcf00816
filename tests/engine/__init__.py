"""Tests of hdetr.engine."""

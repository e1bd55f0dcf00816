"""Tests of hdetr.matching."""

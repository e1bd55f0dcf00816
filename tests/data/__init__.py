"""Tests of hdetr.data."""

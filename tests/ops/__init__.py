"""Tests of hdetr.ops."""

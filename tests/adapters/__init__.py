"""Tests of hdetr.adapters."""

"""Tests of hdetr.config."""

"""Tests of hdetr.models."""

"""Tests of hdetr.commands."""

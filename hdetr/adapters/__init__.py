"""Adapters that train detectors hdetr does not own with its supervision plans (docs/plug_in.md).

Each adapter imports its third-party library lazily: importing hdetr (or this package) never
imports it.
"""

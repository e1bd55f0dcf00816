"""Tests of hdetr.reports: the writers of markdown, JSON and figures."""

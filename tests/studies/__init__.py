"""Tests of hdetr.studies: what is trained and how its runs are run and read."""

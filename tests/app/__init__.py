"""Tests of the per-instance gateway (`app/`)."""

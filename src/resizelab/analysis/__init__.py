"""Measurements beyond one run: spectrum, probe, findings, bench."""

"""Sweeps: plans (grids, TOML files, presets), the claim loop, and the executors (local, packed, Ray)."""

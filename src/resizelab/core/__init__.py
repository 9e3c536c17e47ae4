"""The bottom layer, no torch on import: errors, option declarations and choices, RunConfig, results, logging, statistics."""

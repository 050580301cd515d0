"""Workflows that run several jobs: sweeps and smoke checks."""

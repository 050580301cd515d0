"""Observing a run: event records, and the sinks that print, log and store them."""

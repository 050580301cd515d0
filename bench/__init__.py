"""Benchmarks: slow, side-by-side measurements run by `make bench`, never by the unit suite."""

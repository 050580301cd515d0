"""One module per parallel mode; each registers itself in trainctl.parallel.STRATEGIES."""

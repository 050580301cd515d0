"""One module per parallel mode; each registers itself in trainctl.runtime.parallel.STRATEGIES."""

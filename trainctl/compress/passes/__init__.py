"""The compression passes, one module each; every module registers itself in trainctl.compress.PASSES."""

"""Export formats, one module each; every module registers its format with trainctl.export.FORMATS."""

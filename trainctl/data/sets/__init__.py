"""One module per data set; each registers itself in trainctl.data.DATASETS."""

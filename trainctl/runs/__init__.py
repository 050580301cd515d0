"""Run storage: one directory per run, its files, `latest`, and what those files say about the run."""

"""The recipes' toolbox: objective, evaluation, weight averaging, early stopping, checkpoints, distilling."""

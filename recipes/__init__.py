"""Training recipes: one readable program per task (setup, train loop, evaluation, checkpoints)."""

"""Training recipes, installed as `trainctl.recipes`: one readable program per task, picked by `recipe=`."""

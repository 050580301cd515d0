"""Recommenders over a ratings matrix: top-N rankers (EASE, item-kNN, implicit factors), rating
predictors (mf, k-NN collaborative filtering) and popularity."""

RANKERS = ("ease", "item-knn", "implicit-mf")  # trained for top-N lists
RATING_PREDICTORS = ("mf", "user-cf", "item-cf")  # trained for ratings; ranked by the predicted rating
METHODS = (*RANKERS, *RATING_PREDICTORS, "popular")
TRAINED_ONLY = ("mf", "implicit-mf")  # learned by gradient descent in a run, never fitted on the fly
MODEL_METHODS = {"mf": "mf", "ease": "ease", "item_knn": "item-knn", "implicit_mf": "implicit-mf"}

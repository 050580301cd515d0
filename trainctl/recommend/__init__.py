"""Recommenders over a ratings matrix: k-NN collaborative filtering, popularity, and factor models."""

METHODS = ("mf", "user-cf", "item-cf", "popular")

"""Scores of item-item models (EASE, item-kNN): a user's score for item i sums w(u, j) W[j, i] over the
items j they rated, so each recommendation can name the rated items that contributed most."""

from __future__ import annotations

import numpy as np

from trainctl.recommend.matrix import Compressed


class ItemItemRecommender:
    """x_u W over the implicit matrix (users x items weights); W dense (EASE) or sparse rows (item-kNN)."""

    def __init__(self, name: str, weights: np.ndarray | Compressed, interactions: Compressed) -> None:
        self.name = name
        self.weights = weights
        self.interactions = interactions

    @property
    def num_items(self) -> int:
        return self.interactions.shape[1]

    def scores(self, users: np.ndarray) -> np.ndarray:
        """(users x items) scores."""
        users = np.asarray(users, dtype=np.int64)
        if isinstance(self.weights, np.ndarray):
            return self.interactions.dense_values(users, np.float32) @ self.weights
        owner, position = self.interactions.entries(users)
        rated, weight = self.interactions.index[position], self.interactions.data[position]
        voter, neighbour = self.weights.entries(rated)
        cells = owner[voter] * self.num_items + self.weights.index[neighbour]
        votes = weight[voter] * self.weights.data[neighbour]
        flat = np.bincount(cells, weights=votes, minlength=len(users) * self.num_items)
        return flat.reshape(len(users), self.num_items)

    def contributions(self, user: int, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the user's rated items, len(items) x rated contributions w(u, j) W[j, i])."""
        start, end = self.interactions.ptr[user], self.interactions.ptr[user + 1]
        rated, weight = self.interactions.index[start:end], self.interactions.data[start:end]
        items = np.asarray(items, dtype=np.int64)
        if isinstance(self.weights, np.ndarray):
            table = self.weights[np.ix_(rated, items)].astype(np.float64)
        else:
            table = np.zeros((len(rated), len(items)))
            voter, neighbour = self.weights.entries(rated)
            column = np.full(self.num_items, -1, dtype=np.int64)
            column[items] = np.arange(len(items))
            target = column[self.weights.index[neighbour]]
            hit = target >= 0
            table[voter[hit], target[hit]] = self.weights.data[neighbour[hit]]
        return rated, (table * weight[:, None]).T

    def because(self, user: int, items: np.ndarray, most: int = 2) -> list[list[int]]:
        """For each item, up to `most` rated items that contributed the most (positively) to its score."""
        rated, table = self.contributions(user, items)
        if len(rated) == 0:
            return [[] for _ in items]
        order = np.argsort(-table, axis=1, kind="stable")[:, :most]
        return [[int(rated[j]) for j in row if table[i, j] > 0] for i, row in enumerate(order)]

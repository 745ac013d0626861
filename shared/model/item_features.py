"""Item features a content-aware embedding reads: a category code and hashed title tokens.

A new item with metadata gets a vector from these alone (no interactions needed), which is how
the triplet space serves items the moment the catalogue learns about them. Tokens are hashed
(MurmurHash3, as the id hashing mode) into a fixed number of buckets, so the vocabulary never
grows; categories are a small persisted list (code 0 = none or unknown).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import mmh3
import numpy as np

MAX_TOKENS = 8
_TOKEN = re.compile(r"[a-z0-9]+")


def tokens(title: str | None) -> list[str]:
    """Lower-case alphanumeric words of ``title``, at most :data:`MAX_TOKENS`."""
    return _TOKEN.findall((title or "").lower())[:MAX_TOKENS]


@dataclass
class FeatureVocabulary:
    """Categories (code = position + 1; 0 = none) and the token hash bucket count."""

    categories: list[str]
    token_buckets: int = 1 << 14

    @classmethod
    def fit(
        cls, metadata: Mapping[str, Mapping[str, Any]], token_buckets: int = 1 << 14
    ) -> FeatureVocabulary:
        found = sorted({str(m["category"]) for m in metadata.values() if m.get("category")})
        return cls(found, token_buckets)

    @property
    def n_categories(self) -> int:
        """Rows of a category table, including row 0 for none."""
        return len(self.categories) + 1

    def encode(self, metadata: Sequence[Mapping[str, Any] | None]) -> tuple[np.ndarray, np.ndarray]:
        """Feature codes of items: (category int64 (n,), tokens int64 (n, MAX_TOKENS)).

        Token codes are bucket + 1, with 0 as padding; missing metadata gives all zeros.
        """
        index = {name: code + 1 for code, name in enumerate(self.categories)}
        category = np.zeros(len(metadata), dtype=np.int64)
        token_codes = np.zeros((len(metadata), MAX_TOKENS), dtype=np.int64)
        for row, meta in enumerate(metadata):
            if not meta:
                continue
            category[row] = index.get(str(meta.get("category") or ""), 0)
            for col, token in enumerate(tokens(meta.get("title"))):
                token_codes[row, col] = mmh3.hash(token, signed=False) % self.token_buckets + 1
        return category, token_codes

    def as_dict(self) -> dict[str, Any]:
        return {"categories": self.categories, "token_buckets": self.token_buckets}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> FeatureVocabulary:
        return cls(list(raw["categories"]), int(raw["token_buckets"]))

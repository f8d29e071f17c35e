"""Sizes in named dimensions: ``hidden``, ``in + hidden``, ``4*hidden``, ``3``.

In: dimension names and integer coefficients.  Out: :class:`Size`, a canonical, hashable linear
combination of dimension names plus a constant, that prints in the spec's own notation and
evaluates to an int for given dimension values.  Two sizes are equal exactly when they are equal
for every choice of dimension values.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Tuple


@dataclass(frozen=True)
class Size:
    terms: Tuple[Tuple[str, int], ...] = ()  # sorted (dim, coef), coef != 0
    const: int = 0

    @staticmethod
    def of(dims: Mapping[str, int] | None = None, const: int = 0) -> "Size":
        items = tuple(sorted((d, c) for d, c in (dims or {}).items() if c))
        return Size(items, const)

    @staticmethod
    def dim(name: str) -> "Size":
        return Size(((name, 1),), 0)

    def __add__(self, other: "Size") -> "Size":
        acc: Dict[str, int] = dict(self.terms)
        for d, c in other.terms:
            acc[d] = acc.get(d, 0) + c
        return Size.of(acc, self.const + other.const)

    def evaluate(self, dims: Mapping[str, int]) -> int:
        return self.const + sum(c * dims[d] for d, c in self.terms)

    def text(self) -> str:
        parts = [d if c == 1 else f"{c}*{d}" for d, c in self.terms]
        if self.const or not parts:
            parts.append(str(self.const))
        return " + ".join(parts)

    __str__ = text

    def __repr__(self) -> str:
        return f"Size({self.text()!r})"

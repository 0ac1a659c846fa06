"""A small name -> object registry shared by attacks, models, datasets, methods and the zoo.

Registering a name twice raises; looking up an unknown name raises a ValueError that lists the
known names and the closest matches, so every registry in the library fails the same way.
"""
from __future__ import annotations

import difflib
from typing import Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects of one kind (``kind`` is used in error messages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        """Adds ``item`` under ``name``; raises ValueError if the name is taken."""
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered.")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        """Returns the item for ``name`` or raises ValueError naming the choices."""
        if name not in self._items:
            raise ValueError(unknown_name_message(self.kind, name, self.names()))
        return self._items[name]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def unknown_name_message(kind: str, name: object, choices: list[str]) -> str:
    """The one error text for an unknown name: the value, close matches, and every choice."""
    close = difflib.get_close_matches(str(name), choices, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"Unknown {kind} {name!r}.{hint} Expected one of: {', '.join(choices)}."


def check_choice(kind: str, value: str, choices: list[str]) -> str:
    """Returns ``value`` if it is one of ``choices``, else raises the unknown-name ValueError."""
    if value not in choices:
        raise ValueError(unknown_name_message(kind, value, list(choices)))
    return value

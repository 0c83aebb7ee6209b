"""Many short strings in little memory: stored end to end as UTF-8, a few bytes of overhead each."""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from typing import overload


class PackedStrings(Sequence[str]):
    """An append-only list of strings costing their UTF-8 bytes and 8 bytes each (a ``str`` costs 50 more)."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._ends = array("Q")

    def append(self, value: str) -> None:
        self._data += value.encode()
        self._ends.append(len(self._data))

    def __len__(self) -> int:
        return len(self._ends)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = index + len(self) if index < 0 else index
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = self._ends[index - 1] if index else 0
        return self._data[start : self._ends[index]].decode()

    def __iter__(self) -> Iterator[str]:
        start = 0
        for end in self._ends:
            yield self._data[start:end].decode()
            start = end

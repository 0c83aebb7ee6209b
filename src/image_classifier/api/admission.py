"""Load shedding: a bound on the images the service has admitted and not yet answered.

A request is admitted only while its images fit under ``capacity``; otherwise it is answered at once
with 503 and ``Retry-After`` (as Triton's and TorchServe's bounded queues do), instead of waiting in a
queue that grows without bound while every request in it gets slower.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class Overloaded(Exception):
    """The service holds as many images as it may; ``retry_after_s`` is the wait to suggest."""

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after_s = retry_after_s


class Admission:
    """Counts the images in progress (decoding, queued for the model, or in its forward pass).

    Used from the event loop's thread only, so it needs no lock. A request larger than ``capacity`` is
    admitted when nothing else is in progress, so that every request the other limits allow can be served.
    """

    def __init__(self, capacity: int, retry_after_s: int = 1) -> None:
        self.capacity = capacity
        self.retry_after_s = retry_after_s
        self.in_progress = 0

    @property
    def full(self) -> bool:
        """Whether not even one more image fits: a request can be refused before its body is read."""
        return self.in_progress >= self.capacity

    def refusal(self) -> Overloaded:
        return Overloaded(
            f"The server is at its limit of {self.capacity} images in progress (IC_MAX_QUEUE); "
            f"retry after {self.retry_after_s} s.",
            self.retry_after_s,
        )

    @contextlib.contextmanager
    def admit(self, count: int) -> Iterator[None]:
        """Hold ``count`` images' places for the block; :class:`Overloaded` when they do not fit."""
        if self.in_progress and self.in_progress + count > self.capacity:
            raise self.refusal()
        self.in_progress += count
        try:
            yield
        finally:
            self.in_progress -= count

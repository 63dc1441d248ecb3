"""One instance of something per event loop (a client pool, a poll scheduler), dropped with its loop."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerLoop(Generic[T]):
    """
    ``get()`` returns the running loop's instance, made by ``factory(loop)`` on first use.

    The loop is held weakly: a triggerer (or a test) that closes its loop leaves nothing behind.
    """

    def __init__(self, factory: Callable[[asyncio.AbstractEventLoop], T]) -> None:
        self._factory = factory
        self._instances: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        instance = self._instances.get(loop)
        if instance is None:
            instance = self._instances[loop] = self._factory(loop)
        return instance

    def pop(self) -> T | None:
        """Forget the running loop's instance (the caller closes it) and return it, if there was one."""
        return self._instances.pop(asyncio.get_running_loop(), None)

"""Run a coroutine at once, in the caller's turn, and make it a task only if it must wait.

``start_eagerly(coro)`` is ``asyncio.ensure_future(coro)`` (Python 3.12's eager tasks, for
3.11): the coroutine runs now, up to its first suspension, in a copy of the caller's context
as a task's would. If it finishes without suspending, the answer is a future that is already
done, and no task was made; if it suspends, the rest runs in a task, exactly as the task
``ensure_future`` makes would have run it from that point. Either way the caller holds a
future it may shield, and a cancellation of the caller cannot stop the coroutine: while it
runs eagerly the caller is not suspended, so no cancellation can reach it.

Caveat: while it runs eagerly, ``asyncio.current_task()`` is the caller's task, so code that
binds the current task (``asyncio.timeout``, aiohttp's and asyncpg's timeouts) would bind,
and on expiry cancel, the caller rather than the coroutine. Start eagerly only coroutines
whose first part binds no task (the pipeline asks the store: ``BINDS_NO_TASK``).

Why: a paid call's first charge runs in a future of its own so that a cancellation cannot
lose what it debited (``pipeline``); on SQLite that charge commits without ever suspending,
so the task, its scheduling and the shield's callbacks were pure cost (two extra turns of the
event loop per call).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def start_eagerly(coro: Coroutine[Any, Any, T], name: str | None = None) -> asyncio.Future[T]:
    """``coro``'s outcome as a future: done already if it ran to the end without waiting,
    else the task that runs the rest of it (named ``name``)."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    try:
        yielded = context.run(coro.send, None)
    except StopIteration as done:
        return _done(loop, done.value)
    except asyncio.CancelledError:
        future: asyncio.Future[T] = loop.create_future()
        future.cancel()
        return future
    except (KeyboardInterrupt, SystemExit):  # as a task does: these are not kept for later
        raise
    except BaseException as exc:
        future = loop.create_future()
        future.set_exception(exc)
        return future
    return loop.create_task(_finish(_Resumed(coro, yielded)), name=name, context=context)


def _done(loop: asyncio.AbstractEventLoop, value: T) -> asyncio.Future[T]:
    future: asyncio.Future[T] = loop.create_future()
    future.set_result(value)
    return future


async def _finish(rest: _Resumed[T]) -> T:
    return await rest


class _Resumed(Generic[T]):
    """The rest of a coroutine suspended at ``yielded`` (what it handed the event loop: a
    future to wait for, or None for one turn): awaited in a task, it passes that on, then
    resumes the coroutine with what the task sends or throws, as ``await coro`` would."""

    __slots__ = ("_coro", "_yielded")

    def __init__(self, coro: Coroutine[Any, Any, T], yielded: Any) -> None:
        self._coro = coro
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, T]:
        coro, yielded = self._coro, self._yielded
        while True:
            try:
                sent = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # the task's cancellation, or its future's error
                try:
                    yielded = coro.throw(exc)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
            else:
                try:
                    yielded = coro.send(sent)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]

"""Batches put on the device ahead of the step that reads them, from a background thread."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import jax


def prefetch_to_device(
    batches: Iterator[Any], size: int = 2, sharding: Any = None
) -> Iterator[Any]:
    """Yields ``batches`` already put on the device, ``size`` of them ahead.

    A background thread assembles the next batches and starts their transfers, so the device
    never waits on the host. ``sharding=None``: to the default device. With a sharding (e.g.
    ``parallel.batch_sharding(mesh)``, the batch axis split across the devices) each batch is
    this process's rows of a global batch, made into global arrays by
    ``jax.make_array_from_process_local_data`` (on one process: ``jax.device_put``). Order is
    kept; an exception in ``batches`` is re-raised here. Closing this generator early
    (``break``) stops the thread and closes ``batches``.
    """
    if size < 1:
        raise ValueError(f"prefetch size must be >= 1, got {size}")
    ready: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()
    end = object()
    # Bound now: a generator left open is closed by the garbage collector, possibly while the
    # interpreter shuts down and module globals (``queue``) are already gone.
    empty = queue.Empty

    def produce() -> None:
        try:
            for batch in batches:
                if stop.is_set():
                    break
                on_device = (
                    jax.device_put(batch)
                    if sharding is None
                    else jax.make_array_from_process_local_data(sharding, batch)
                )
                ready.put((on_device, None))
                if stop.is_set():
                    break
            else:
                ready.put((end, None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            if not stop.is_set():
                ready.put((end, e))
        finally:
            close = getattr(batches, "close", None)
            if stop.is_set() and close is not None:
                close()

    thread = threading.Thread(target=produce, name="prefetch_to_device", daemon=True)
    thread.start()
    try:
        while True:
            item, error = ready.get()
            if error is not None:
                raise error
            if item is end:
                return
            yield item
    finally:
        stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                ready.get_nowait()
            except empty:
                break
        thread.join(timeout=10)

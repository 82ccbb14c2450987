"""LRU cache of loaded models, bounded by a count and a memory budget, with single-flight loading.

All bookkeeping runs on the event loop thread (no locks needed); only the load itself runs in a
worker thread. Concurrent first requests for one (name, version) await the same asyncio Future,
so a model is loaded once however many clients ask at the same moment. After a load, least
recently used models are evicted until both bounds hold again; a model larger than the whole
memory budget is refused rather than evicting everything for it, judged from its artifact's size
before loading (`sizer`). A failed or refused load is remembered for `failure_ttl` seconds, so a
broken or oversized model does not cost a load (checksums, parsing) on every request.
"""

import asyncio
import logging
import time
from collections import OrderedDict

import anyio.to_thread

log = logging.getLogger("metasig.serve")


class TooLarge(RuntimeError):
    """The model's estimated memory exceeds the whole budget (HTTP 507)."""


class LoadFailed(RuntimeError):
    """The artifact failed verification or could not be read (HTTP 503)."""


class ModelCache:
    def __init__(self, loader, max_models=64, max_bytes=None, metrics=None, sizer=None, failure_ttl=30.0):
        self.loader = loader  # blocking callable(entry) -> object with .nbytes
        self.sizer = sizer  # blocking callable(entry) -> estimated bytes, without loading
        self.failure_ttl = failure_ttl
        self._failed = {}  # key -> (monotonic expiry, exception) of a recent failed load
        self.max_models = max(1, int(max_models))
        self.max_bytes = max_bytes
        self.metrics = metrics
        self._models = OrderedDict()  # key -> model, least recently used first
        self._pending = {}  # key -> Future of a load in progress
        self.bytes = 0
        self.loads = 0
        self.evictions = 0

    def __contains__(self, key):
        return key in self._models

    def __len__(self):
        return len(self._models)

    def peek(self, key):
        return self._models.get(key)

    def loaded(self):
        return list(self._models)

    async def get(self, entry):
        """The loaded model for a repository Entry, loading it on first use."""
        key = entry.key
        model = self._models.get(key)
        if model is not None:
            self._models.move_to_end(key)
            return model
        failed = self._failed.get(key)
        if failed is not None:
            if time.monotonic() < failed[0]:
                raise type(failed[1])(str(failed[1]))  # a fresh one: a re-raised object keeps growing its traceback
            del self._failed[key]
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._pending[key] = pending
            asyncio.get_running_loop().create_task(self._load(entry, pending))
        # shield: one cancelled waiter (client gone) must not cancel the shared load
        return await asyncio.shield(pending)

    async def _load(self, entry, future):
        key = entry.key
        try:
            try:
                if self.sizer is not None:
                    self._check_budget(entry, await anyio.to_thread.run_sync(self.sizer, entry))
                model = await anyio.to_thread.run_sync(self.loader, entry)
            except TooLarge:
                raise
            except Exception as exc:  # the message says which file failed and why
                log.warning("loading %s version %s failed: %s", entry.name, entry.version, exc)
                if self.metrics:
                    self.metrics.load_failures.inc()
                raise LoadFailed(f"model {entry.name!r} version {entry.version!r} could not be loaded: {exc}") from exc
            self._check_budget(entry, model.nbytes)
            self._models[key] = model
            self.bytes += model.nbytes
            self.loads += 1
            if self.metrics:
                self.metrics.loads.inc()
            self._shrink(keep=key)
            future.set_result(model)
        except Exception as exc:  # noqa: BLE001 - every failure goes to the waiting requests
            if isinstance(exc, (LoadFailed, TooLarge)):
                self._failed[key] = (time.monotonic() + self.failure_ttl, exc)
            future.set_exception(exc)
            future.exception()  # mark retrieved: a load nobody waits for any more must not warn
        finally:
            self._pending.pop(key, None)
            self._publish()

    def _check_budget(self, entry, nbytes):
        if self.max_bytes is not None and nbytes > self.max_bytes:
            raise TooLarge(
                f"model {entry.name!r} needs an estimated {nbytes / 2**20:.1f} MiB, more than "
                f"the whole memory budget ({self.max_bytes / 2**20:.1f} MiB)"
            )

    def forget_failures(self):
        """Called when the index changes: a republished model deserves a new try."""
        self._failed.clear()

    def _shrink(self, keep):
        while len(self._models) > 1 and (
            len(self._models) > self.max_models or (self.max_bytes is not None and self.bytes > self.max_bytes)
        ):
            key = next(iter(self._models))
            if key == keep:  # never evict the model just loaded; it is the most recent anyway
                break
            self._drop(key)
            self.evictions += 1
            if self.metrics:
                self.metrics.evictions.inc()

    def _drop(self, key):
        model = self._models.pop(key)
        self.bytes -= model.nbytes
        log.info("unloaded %s version %s", *key)

    def unload(self, name=None, keep=None):
        """Drop every loaded version of `name` (all models if None), or every key not in `keep`."""
        dropped = 0
        for key in list(self._models):
            if (
                (name is not None and key[0] == name)
                or (keep is not None and key not in keep)
                or (name is None and keep is None)
            ):
                self._drop(key)
                dropped += 1
        self._publish()
        return dropped

    def _publish(self):
        if self.metrics:
            self.metrics.cache_models.set(len(self._models))
            self.metrics.cache_bytes.set(self.bytes)

"""Peak memory of a block of code: CUDA's allocator counter, or the resident set size polled on a CPU."""

from __future__ import annotations

import os
import resource
import threading

import torch


class PeakMemory:
    """Peak memory of a code block.

    CUDA: ``torch.cuda.max_memory_allocated`` (bytes held by tensors).
    CPU: the peak resident set size (RSS) above the RSS at entry, polled from
    ``/proc/self/statm`` every ``interval`` seconds by a background thread
    (torch's CPU allocator bypasses ``tracemalloc``); where /proc is missing,
    the growth of ``resource.getrusage().ru_maxrss`` (0 if the process peaked
    higher before). ``method`` says which was used. Memory the process already
    holds (freed by an earlier run in the same process) is reused without
    growing RSS, so compare configurations in fresh processes, as
    :func:`llmrec.bench.bench_seqrec` does.
    """

    def __init__(self, device="cpu", interval: float = 0.005):
        self.device = torch.device(device)
        self.interval = interval
        self.peak_mb = 0.0
        self.method = ""
        self._thread = None

    @staticmethod
    def _rss() -> int | None:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return None

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            self.method = "torch.cuda.max_memory_allocated above the allocation at start"
            return self
        self._base = self._rss()
        if self._base is None:
            self._base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            self.method = "ru_maxrss growth (process peak RSS; 0 if the process peaked higher before)"
            return self
        self.method = f"peak RSS above RSS at start, polled from /proc/self/statm every {self.interval * 1000:g} ms"
        self._max = self._base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        while not self._stop.is_set():
            r = self._rss()
            if r is not None and r > self._max:
                self._max = r
            self._stop.wait(self.interval)

    def peak_so_far(self) -> float:
        """Peak in MB since entry (the block may still be running)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) - self._base
        elif self.method.startswith("ru_maxrss"):
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - self._base
        else:
            r = self._rss()
            self._max = max(self._max, r or 0)
            peak = self._max - self._base
        self.peak_mb = max(peak, 0) / 2**20
        return self.peak_mb

    def __exit__(self, *exc):
        if getattr(self, "_thread", None) is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        self.peak_so_far()
        return False

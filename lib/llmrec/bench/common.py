"""What every benchmark records and times with: the machine it ran on and a synchronised clock."""

from __future__ import annotations

import os
import platform
import time

import torch


def machine() -> dict:
    """The machine a benchmark ran on: platform, processor, CPUs, torch and its threads, the GPU if any."""
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _timed(fn, device: str):
    """(result, wall seconds, process CPU seconds) of ``fn()``, the device synchronised around it."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    sync()
    return out, time.perf_counter() - t0, time.process_time() - c0

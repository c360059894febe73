"""``python -m llmrec.bench _variant NAME REPEATS [DEVICE]``: one variant of the ``losses`` benchmark in this
fresh process (:func:`llmrec.bench.masking.bench_losses` starts one per variant), its result as one line of JSON."""

import json
import os
import sys

import torch

from .masking import _variant

if len(sys.argv) >= 3 and sys.argv[1] == "_variant":
    torch.set_num_threads(int(os.environ.get("LLMREC_BENCH_THREADS", os.cpu_count() or 1)))
    print(json.dumps(_variant(sys.argv[2], int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else "cpu")))

"""What a GPU does with the same work (``cuda``, by name only: ``python -m llmrec bench cuda`` writes
``bench/cuda.json``; not part of ``make bench``)."""

from __future__ import annotations

import torch

from .costs import _lite_costs
from .decoding import bench_decode
from .throughput import bench_train


def bench_cuda(device: str = "cuda", profile: str | None = None, users: int = 64, exact_users: int = 4,
               dataset: str = "toy", model: str = "smollm2-135m", lite_windows: int = 2000) -> dict:
    """What issue 25 asks to measure on a GPU, for ``bench/cuda.json`` (``python -m llmrec bench cuda``, not
    part of ``make bench``): :func:`bench_train` at ``profile``'s settings (default: paper on a GPU, quick on
    the CPU), :func:`bench_decode` on ``users`` test users (``exact_users`` for exact ranking) and
    :func:`_lite_costs` (``lite_windows`` windows, the profile's blocks); its ``summary``: each loss's windows/s,
    tokens/s and utilisation in every setting, beam search users/s, exact ranking, likelihood and Lite-LLM4Rec
    ms per user (batched engines), a Lite epoch's seconds per 1,000 windows, and the GPU named."""
    profile = profile or ("quick" if device == "cpu" else "paper")
    train = bench_train(profile, device=device)
    dec = bench_decode(users=users, exact_users=exact_users, repeats=1, device=device, dataset=dataset, model=model,
                       threads=(torch.get_num_threads(),))
    d = next(v for k, v in dec.items() if k.startswith("threads="))
    lite = _lite_costs(profile, device, dataset, lite_windows)
    per_user = lambda key: d[key]["batched"]["seconds_per_user"]
    summary = {"gpu": torch.cuda.get_device_name(0) if device != "cpu" and torch.cuda.is_available() else None,
               "device": device, "profile": profile, "dtype": train["dtype"],
               "train": {loss: {name: {k: x[k] for k in ("windows_per_s", "tokens_per_s", "utilisation")}
                                for name, x in r["settings"].items()} for loss, r in train["losses"].items()},
               "beam_users_per_s": 1 / per_user("beam"), "exact_ms_per_user": 1e3 * per_user("exact"),
               "likelihood_ms_per_user": 1e3 * per_user("likelihood"), "lite_ms_per_user": 1e3 * lite["lite_user"],
               "lite_rec_layers": lite["lite_rec_layers"],
               "lite_epoch_seconds_per_1000_windows": 1e3 * lite["lite_epoch_seconds"] / lite["lite_windows"]}
    return {"summary": summary, "train": train, "decode": dec, "lite": lite}

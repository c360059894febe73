"""What the chapters share: the canonical LLM runs of a profile, their evaluation, tables.

A chapter asks for ``llm_run(profile, "lml", dataset)``; the run cache (keyed by
the full configuration) makes every chapter that asks for the same run get the
same trained model, so nothing trains twice within a ``make figures`` batch.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import runs
from .profiles import profile as profile_sizes
from .profiles import train_config


def dataset_for(profile: str, dataset: str | None) -> str:
    """The dataset a profile runs on: ``smoke`` always uses the synthetic catalogue."""
    return "synthetic" if profile == "smoke" else (dataset or profile_sizes(profile)["dataset"])


def llm_config(profile: str, loss: str, dataset: str | None = None, device: str | None = None, **overrides) -> dict:
    return train_config(profile, loss=loss, dataset=dataset_for(profile, dataset), device=device, **overrides)


def llm_run(profile: str, loss: str, dataset: str | None = None, device: str | None = None, progress: bool = True,
            **overrides) -> Path:
    """Train (or find in the run cache) one LLM run of the profile; S-DPO starts from the profile's LML run."""
    from .train import train

    if loss == "sdpo" and "sdpo_ref" not in overrides:
        ref_over = {k: v for k, v in overrides.items() if k in ("seed", "lr", "n_train", "layers")}
        overrides["sdpo_ref"] = str(llm_run(profile, "lml", dataset, device, progress, **ref_over))
    return train(llm_config(profile, loss, dataset, device, **overrides), progress=progress)


def llm_eval(run: str | Path, profile: str, split: str = "test", mode: str = "beam", progress: bool = True) -> dict:
    """Evaluate a run at the profile's sizes (users, beams); cached in the run's metrics.json."""
    from .evaluate import evaluate_run

    p = profile_sizes(profile)
    n = p["exact_users"] if mode == "exact" else p["eval_users"]
    return evaluate_run(run, mode=mode, split=split, n_users=n, beams=p["eval_beams"], progress=progress)


def row(name: str, run: str | Path, ev: dict) -> dict:
    done = runs.read_json(Path(run) / "done.json")
    return {"method": name, **ev["summary"], "n_users": ev["n_users"],
            "s/step": done["seconds_per_step"], "train_s": done["train_seconds"],
            "eval_s/user": ev["seconds_per_user"]}


def results_table(evals: dict[str, tuple[Path, dict]]) -> pd.DataFrame:
    """One row per method: NDCG/HR@5,10, MRR, seconds per training step and per evaluated user."""
    return pd.DataFrame([row(name, run, ev) for name, (run, ev) in evals.items()]).set_index("method")


def paired_table(evals: dict[str, tuple[Path, dict]], baseline: str,
                 metrics=("ndcg@5", "ndcg@10", "hr@5", "hr@10")) -> pd.DataFrame:
    """Paired-bootstrap 95% intervals of (method - baseline) on the same users."""
    from .metrics import paired_bootstrap

    base = evals[baseline][1]
    out = []
    for name, (_, ev) in evals.items():
        if name == baseline:
            continue
        if ev["user_ids"] != base["user_ids"]:
            raise ValueError(f"{name} and {baseline} were evaluated on different users")
        for m in metrics:
            b = paired_bootstrap(base["ranks"], ev["ranks"], m)
            out.append({"method": name, "vs": baseline, "metric": m, "diff": b["diff"], "lo": b["lo"], "hi": b["hi"]})
    return pd.DataFrame(out)


def load_trained(run: str | Path):
    """``(rec, model)`` for a finished run: the Recommender (data, trie, prompts) and the model with its adapter."""
    from .train import Recommender, TrainConfig

    cfg = TrainConfig.from_dict(runs.read_json(Path(run) / "config.json"))
    rec = Recommender(cfg)
    model = rec.load_model(Path(run) / "adapter")
    model.eval()
    return rec, model


def real_batch(rec, n: int = 8, split: str = "train", seed: int = 0):
    """A collated batch of ``n`` seeded windows of ``split``."""
    from .data import sample_windows
    from .train import collate

    df = sample_windows(rec.ds.split(split), n, seed=seed)
    return collate(rec.encoder.encode_frame(df), rec.trie, rec.tok.pad_token_id)


def valid_logits_of(model, batch, full: bool = True):
    """Valid-token logits (and the full-vocabulary logsumexp) of a batch, without gradients."""
    import torch

    from .train import valid_logits

    with torch.no_grad():
        return valid_logits(model, batch, full=full)

"""SASRec beside the LLM recommenders (chapters 07 and 08): SASRec + CE and + SCE trained to their plateau, and
every run of either family evaluated on the same users, with paired intervals against a baseline."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import runs
from ..core.profiles import profile as profile_sizes
from .classic_protocol import PROTOCOL_VARIANTS
from .profile_runs import llm_eval, seqrec_config
from .tables import paired_table


PLATEAU = dict(epochs=50, patience=5)  # early stopping with patience 5 and a cap the best epoch should not reach


def sasrec_plateau(profile: str, dataset: str | None = None, **overrides) -> dict[str, Path]:
    """SASRec + CE and SASRec + SCE (the SCE authors' K 500, α 100), as the classic protocol defines them
    (:data:`.classic_protocol.PROTOCOL_VARIANTS`), trained to their plateau (:data:`PLATEAU`): the classic rows
    that chapters 07 and 08 put beside the LLM families (one run each, shared through the run cache)."""
    cfg = lambda **kw: seqrec_config(profile, dataset, **{**PLATEAU, **kw, **overrides})
    return {name: runs.train(cfg(**PROTOCOL_VARIANTS[name]), progress=False)
            for name in ("SASRec + CE", "SASRec + SCE (K 500, α 100)")}


def cross_family_table(llm: dict[str, Path], seq: dict[str, Path], profile: str, baseline: str,
                       split: str = "test") -> tuple[pd.DataFrame, pd.DataFrame]:
    """LLM runs and classic runs on the LLM runs' users: metrics, and paired intervals vs ``baseline``.

    Every run is evaluated by :func:`llmrec.runs.evaluate` on the same seeded
    users (the LLM runs by beam search, the classic runs by full ranking).
    """
    evals = {name: (run, llm_eval(run, profile, split)) for name, run in llm.items()}
    n = profile_sizes(profile)["eval_users"]
    evals.update({name: (run, runs.evaluate(run, split, "full", n, progress=False)) for name, run in seq.items()})
    table = pd.DataFrame([{"method": m, **ev["summary"], "n_users": ev["n_users"]} for m, (_, ev) in evals.items()])
    return table.set_index("method"), paired_table(evals, baseline)

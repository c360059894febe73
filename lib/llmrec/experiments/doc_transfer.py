"""Chapter 09's reference table on the pages (:mod:`.doc_tables`): do the papers' headline claims hold on Toy and
Books? The table and its sentences are :func:`.transfer.reference_table` of the committed records, read once per
``python -m llmrec tables``; nothing trains. What ``llmrec verdicts`` costs on a 10,000-window dataset comes from
``bench/transfer_cost.json`` (``bench/transfer_cost.py --time``)."""

from __future__ import annotations

import functools

from ..core.io import read_json, repo_root
from . import transfer
from .doc_format import markdown, table, values
from .transfer_runs import RANKING


@functools.cache
def _reference():
    """The committed reference on Toy and Books (:func:`.transfer.reference_table`; read once per run)."""
    return transfer.reference_table()


@table
def transfer_reference() -> str:
    """Claim x dataset x measure: the difference (method − baseline) [95% interval over users], the seeds, the
    spread of the per-seed differences, the verdict of every seed and of the seed mean, and the note."""
    shown = transfer.show(_reference())
    return markdown(shown.to_dict("records"), "l" * shown.shape[1])


@table
def transfer_findings() -> str:
    """One sentence per claim (:func:`.transfer.findings`): where it holds, is reversed, unresolved or not run."""
    return "\n".join(f"* {sentence}" for sentence in transfer.findings(_reference()))


@values
def transfer_claims() -> dict[str, str]:
    """Each claim's sentence on NDCG@10 and HR@10 (:func:`.transfer.where_it_holds`), by the claim's key."""
    table_ = _reference()
    return {key: transfer.where_it_holds(table_, key, RANKING) for key in dict.fromkeys(table_["key"])}


@values
def transfer_cost() -> dict[str, str]:
    """What ``llmrec verdicts`` cost on ``bench/transfer_cost.py``'s 10,000-window dataset, by device ("cpu",
    "cuda"): the minutes measured, the machine, the runs and the estimate, from ``bench/transfer_cost.json``;
    "not measured yet" where it holds no such measurement."""
    path = repo_root() / "bench" / "transfer_cost.json"
    measured = read_json(path) if path.exists() else {}
    out = {}
    for device in ("cpu", "cuda"):
        m = measured.get(device)
        if m is None:
            out[device] = f"not measured yet on {'a GPU' if device == 'cuda' else 'the CPU'} (`python " \
                          f"bench/transfer_cost.py --time{' --device cuda' if device == 'cuda' else ''}`)"
            continue
        where = m["machine"]["cuda"] if device == "cuda" else f"{m['machine']['cpus']} CPU cores"
        out[device] = (f"{m['seconds'] / 60:.0f} min on {where} ({m['dataset']['train windows']:,} training "
                       f"windows, {m['dataset']['items']:,} items; {m['trained']} runs trained, "
                       f"{m['found in the run cache']} found in the run cache; estimated {m['estimate_s'] / 60:.0f} "
                       f"min; {m['when'][:10]})")
    return out

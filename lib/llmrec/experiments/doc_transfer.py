"""Chapter 09's reference table on the pages (:mod:`.doc_tables`): do the papers' headline claims hold on Toy and
Books? The table and its sentences are :func:`.transfer.reference_table` of the committed records, read once per
``python -m llmrec tables``; nothing trains."""

from __future__ import annotations

import functools

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

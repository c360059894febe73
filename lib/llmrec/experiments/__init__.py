"""What the chapters run, one module per question (none does work at import):

* :mod:`.parameters`: what a chapter's ``dataset`` and size parameters mean (chapters 01-05, 08);
* :mod:`.profile_runs`: what a profile runs: each family's configuration, the canonical LLM runs a chapter gets
  and the sizes they are evaluated at (chapters 02-08);
* :mod:`.llm_losses`: which LLM loss and temperature wins: the tau sweep, the ablation with its choices on
  validation, beam search against exact ranking, beams scored by P_valid (chapters 05-06);
* :mod:`.classic_losses`: which loss wins for the classic models on the profile's schedule, and what each costs
  (chapter 07);
* :mod:`.classic_protocol`: which classic loss wins under one fair protocol: learning rates chosen on
  validation, seeds, the committed reference (chapter 07, ``make results-classic``);
* :mod:`.sasrec_vs_llm`: SASRec beside the LLM recommenders on the same users (chapters 07-08);
* :mod:`.lite_vs_sasrec`: Lite-LLM4Rec, its ablations and its inference cost beside SASRec and the LLM
  (chapter 08);
* :mod:`.tables`: the tables of evaluated runs: metrics, paired intervals against a baseline;
* :mod:`.published`: the committed results under ``results/<profile>/``: export, read back, provenance;
* :mod:`.doc_tables`: the results tables and numbers of README.md and docs/*.md, made from the committed
  results into the pages' generated regions (:mod:`.doc_regions`): ``python -m llmrec tables``.

A chapter asks for ``profile_runs.llm_run(profile, "lml", dataset)``; the run cache (keyed by the full
configuration) makes every chapter that asks for the same run get the same trained model, so nothing trains
twice within a ``make figures`` batch.
"""

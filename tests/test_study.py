"""The study's choices of runs and evaluation sizes (no training: llm_run and evaluate_run are replaced)."""

from llmrec import experiments as study
from llmrec.core.profiles import train_config


def test_mechanism_runs_share_the_canonical_lml_run_and_shorten_the_side_dataset(monkeypatch):
    calls = []
    monkeypatch.setattr(study, "llm_run", lambda profile, loss, ds, device, progress=True, **kw: calls.append((ds, kw)))
    study.mechanism_run("quick", "toy", seed=0)
    study.mechanism_run("quick", "books", seed=0)
    study.mechanism_run("full", "books", seed=0)
    assert calls == [("toy", {"seed": 0}), ("books", {"seed": 0, "max_steps": 32}), ("books", {"seed": 0})]
    assert train_config("quick", loss="lml")["log_grad_norms"] == 4
    assert "log_grad_norms" not in train_config("quick", loss="msl-ats")  # the TrainConfig default: 0, never


def test_validation_uses_fewer_beams_and_its_own_metric(monkeypatch):
    from llmrec import runs

    seen = []
    monkeypatch.setattr(runs, "evaluate", lambda run, split, mode, n_users, k, **kw: seen.append((split, n_users, k)))
    study.llm_eval("r", "quick", "valid")
    study.llm_eval("r", "quick", "test")
    study.llm_eval("r", "quick", "test", mode="full")
    assert seen == [("valid", 24, 5), ("test", 48, 10), ("test", 4, 10)]
    assert study.valid_metric("quick") == "ndcg@5" and study.valid_metric("full") == "ndcg@10"

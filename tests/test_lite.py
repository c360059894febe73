"""Lite-LLM4Rec: heads against a dense computation, the loss against a float64 softmax, the item-vector cache,
padding, the trained parameters of each tuning mode, save/load, resume and a smoke run that ranks."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llmrec import lite, runs
from llmrec.core import results, rundir
from llmrec.core.profiles import train_config
from llmrec.data import load_dataset
from llmrec.lite import items as I
from llmrec.lite.model import LiteLLM4Rec, prepare_body, standardise
from llmrec.llm.model import load_llm
from llmrec.itemseq.objectives import batch_loss


@pytest.fixture(autouse=True)
def runs_root(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


def smoke(**kw):
    return lite.complete(train_config("smoke", "lite", **kw))


def tiny_model(head="mlp", vectors=True, tune="lora", n_items=30, d_z=12, seed=0):
    torch.manual_seed(seed)
    llm, _ = load_llm("tiny")
    body = prepare_body(llm.get_decoder(), tune, {"r": 4, "targets": ["q_proj", "v_proj"]})
    z = torch.randn(n_items + 1, d_z) * 5 + 3 if vectors else None
    if z is not None:
        z[0] = 0
    return LiteLLM4Rec(n_items, body, z, head, dropout=0.0).eval()


def test_standardise_is_a_per_dimension_z_score_over_items():
    v = torch.randn(9, 4, dtype=torch.float64) * torch.tensor([1.0, 40.0, 0.1, 7.0]) + 3
    z = standardise(v).numpy()
    real = v[1:].numpy()
    assert np.allclose(z[1:], (real - real.mean(0)) / real.std(0, ddof=1))
    assert np.all(z[0] == v[0].numpy())


@pytest.mark.parametrize("vectors", [True, False])
def test_mlp_head_equals_a_dense_computation(vectors):
    m = tiny_model("mlp", vectors)
    h = torch.randn(3, m.hidden)
    W, b = m.out_table.detach().double(), m.out_bias.detach().double()
    M, c = m.mlp.weight.detach().double(), m.mlp.bias.detach().double()
    hd = h.double()
    g = 0.5 * (hd @ M.T + c) * (1 + torch.erf((hd @ M.T + c) / math.sqrt(2)))  # GELU, written out
    dense = np.array([[float(g[u] @ W[i] + b[i]) for i in range(1, m.n_items + 1)] for u in range(3)])
    assert np.allclose(m.scores(h).detach().numpy(), dense, atol=1e-4)


def test_dot_head_scores_any_item_by_its_vector():
    m = tiny_model("dot")
    h = torch.randn(2, m.hidden, dtype=torch.float64)
    P, p0 = m.proj.weight.detach().double(), m.proj.bias.detach().double()
    z = m.item_vec.double()
    dense = np.array([[float((P @ h[u] + p0) @ z[i]) / math.sqrt(z.shape[1]) for i in range(1, m.n_items + 1)]
                      for u in range(2)])
    assert np.allclose(m.scores(h.float()).detach().numpy(), dense, atol=1e-4)
    assert m.output_table()[1] is None and not m.item_vec.requires_grad  # fixed vectors: unseen items score too


def test_left_padding_changes_nothing_and_attention_is_causal():
    m = tiny_model("mlp")
    seq = torch.tensor([[0, 0, 0, 4, 9, 2], [5, 6, 7, 8, 1, 3]])
    out = m(seq)
    alone = m(torch.tensor([[4, 9, 2]]))  # the first row without its padding
    assert torch.allclose(out[0, 3:], alone[0], atol=1e-5)
    assert torch.all(out[0, :3] == 0)
    # the recommendation LLM over the item vectors directly (no rotation): the same states
    x = m.embed(torch.tensor([[5, 6, 7, 8, 1, 3]]))
    assert torch.allclose(out[1], m.body(inputs_embeds=x).last_hidden_state[0], atol=1e-5)
    pert = seq.clone()
    pert[1, 4] = 11
    assert torch.allclose(m(pert)[1, :4], out[1, :4], atol=1e-6)  # the future does not leak
    assert not torch.allclose(m(pert)[1, 4:], out[1, 4:], atol=1e-4)


@pytest.mark.parametrize("head,positions", [("mlp", "all"), ("mlp", "last"), ("dot", "all")])
def test_ce_loss_equals_a_float64_softmax_over_the_catalogue(head, positions):
    m = tiny_model(head)
    seqs = torch.tensor([[0, 0, 3, 7, 9, 12], [1, 2, 3, 4, 5, 6], [0, 8, 8, 2, 30, 1]])
    cfg = {"loss": "ce", "positions": positions, "negatives": 5, "alpha": 1.0}
    got = batch_loss(m, seqs, cfg, m.n_items, torch.Generator().manual_seed(0), torch.device("cpu"))
    h = m(seqs[:, :-1])
    terms = []
    for r in range(3):
        for t in range(seqs.shape[1] - 1):
            target = int(seqs[r, t + 1])
            if target == 0 or (positions == "last" and t != seqs.shape[1] - 2):
                continue
            s = m.scores(h[r, t]).detach().double()
            terms.append(float(torch.logsumexp(s, 0) - s[target - 1]))
    assert len(terms) == (3 if positions == "last" else 14)
    assert math.isclose(float(got.detach()), float(np.mean(terms)), rel_tol=1e-5)


@pytest.mark.parametrize("tune", ["lora", "frozen", "full"])
def test_each_tuning_mode_trains_what_it_says(tune):
    m = tiny_model("mlp", tune=tune)
    trained = {n for n, p in m.named_parameters() if p.requires_grad}
    body = {n for n in trained if n.startswith("body.")}
    assert {"adapter.weight", "mlp.weight", "out_table", "out_bias"} <= trained
    if tune == "lora":
        assert body and all("lora_" in n for n in body)
    elif tune == "frozen":
        assert not body
    else:
        assert body and not any("lora_" in n for n in body)
    assert m.body.embed_tokens is None  # inputs are the adapted item vectors


def test_item_vector_cache_is_keyed_by_the_catalogue_and_the_encoder(tmp_path, monkeypatch):
    ds = load_dataset("synthetic")
    first = I.item_vectors(ds, "tiny", root=tmp_path)
    assert first.shape[0] == max(ds.items) + 1 and torch.all(first[0] == 0)
    assert torch.allclose(first, I.encode_items(ds.items, "tiny"))  # the cache holds what the encoder gives
    calls = []
    monkeypatch.setattr(I, "encode_items", lambda items, *a, **k: calls.append(len(items)) or first)
    assert torch.equal(I.item_vectors(ds, "tiny", root=tmp_path), first) and not calls  # read, not encoded
    changed = type(ds)(ds.name, {**ds.items, 3: ds.items[3] + " (2nd edition)"}, ds.train, ds.valid, ds.test)
    I.item_vectors(changed, "tiny", root=tmp_path)
    assert calls == [len(ds.items)]  # a changed title is a new catalogue: encoded again
    I.item_vectors(ds, "tiny", max_tokens=8, root=tmp_path)
    assert len(calls) == 2  # and so are other encoder settings
    monkeypatch.setattr(I, "encoder_fingerprint", lambda name: "other weights")
    I.item_vectors(ds, "tiny", root=tmp_path)
    assert len(calls) == 3  # and other weights under the encoder's name
    assert len(list(tmp_path.glob("*.pt"))) == 4


def test_smoke_run_trains_ranks_and_round_trips(runs_root):
    cfg = smoke(epochs=4)
    run_dir = lite.train(cfg, progress=False)
    log = rundir.read_log(run_dir)
    assert len(log) == 4 and log[-1]["loss"] < log[0]["loss"]
    done = rundir.read_json(run_dir / "done.json")
    assert done["n_trained_params"] < done["n_params"]
    rec = runs.load(run_dir)
    assert isinstance(rec, lite.LiteRecommender) and rec.family == "lite"
    # the saved best epoch scores validation exactly as it did during training
    valid = runs.evaluate(run_dir, "valid", progress=False)
    assert math.isclose(valid["summary"]["ndcg@10"], done["best_valid_ndcg@10"], rel_tol=1e-6)
    test = runs.evaluate(run_dir, "test", progress=False)
    assert test["n_users"] == len(rec.ds.test) and np.all(np.isfinite(test["ranks"]))
    assert lite.train(cfg, progress=False) == run_dir  # the run cache
    top = rec.recommend([[1, 2, 3]], k=5)[0]
    assert len(top) == 5 and len(set(top)) == 5


@pytest.mark.parametrize("kw", [dict(encoder="none", head="dot"), dict(loss="sce", tune="frozen")])
def test_resume_equals_uninterrupted(tmp_path, kw):
    cfg = smoke(epochs=2, **kw)
    full = lite.train(cfg, run_dir=tmp_path / "full", progress=False)
    part = tmp_path / "part"
    lite.train({**cfg, "epochs": 1}, run_dir=part, progress=False)
    lite.train(cfg, run_dir=part, progress=False)
    assert [r["loss"] for r in rundir.read_log(part)] == [r["loss"] for r in rundir.read_log(full)]
    a, b = (torch.load(d / "model.pt", weights_only=False)["model"] for d in (full, part))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="head"):
        lite.complete({"head": "linear"})
    with pytest.raises(ValueError, match="rec_layers"):
        lite.complete({"rec_layers": 0})
    with pytest.raises(ValueError, match="unknown lite config"):
        lite.complete({"layers": 2})


def test_cli_trains_and_evaluates_the_lite_family(capsys):
    from llmrec.cli import main

    assert main(["train", "--family", "lite", "--profile", "smoke", "--head", "dot", "--epochs", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    run_dir = out.splitlines()[0]
    assert runs.config_of(run_dir)["family"] == "lite" and runs.config_of(run_dir)["head"] == "dot"
    assert '"ndcg@10"' in out  # evaluated on every test window
    assert main(["train", "--family", "lite", "--profile", "smoke", "--rec-layers", "0"]) == 2  # names the flag
    assert "--rec-layers" in capsys.readouterr().err


def test_committed_results_read_back_as_the_same_tables(tmp_path):
    from llmrec.experiments import published, tables
    from llmrec.experiments.lite_vs_sasrec import all_users

    run = lite.train(smoke(epochs=2), progress=False)
    evals = all_users({"popularity": None, "Lite-LLM4Rec": run}, "test", "synthetic")
    assert published.slug("SASRec + SCE (K 500, α 100)") == "sasrec-sce-k-500-100"  # ASCII file names
    paths = published.export_runs(evals, tmp_path, "smoke", "synthetic", "test")
    assert len(paths) == 2 and all(p.exists() for p in paths)
    pop, lite_rec = (results.read_record(p) for p in paths)  # results records, checked against the schema
    assert pop.family == "popularity" and pop.training is None and lite_rec.training.best_epoch >= 1
    (ev,) = lite_rec.evaluations.values()
    assert ev.ranks and ev.seconds_per_user and lite_rec.provenance.commit and lite_rec.dataset_fingerprint
    back = published.read_runs(tmp_path, "synthetic")
    assert list(back) == list(evals)  # the order of the table that was exported, not of the file names
    a, b = tables.accuracy_table(evals), tables.accuracy_table(back)
    assert list(a.index) == list(b.index)
    pd_cols = ["ndcg@10", "ndcg@10 lo", "ndcg@10 hi", "hr@10", "recall@10", "n_users", "best_epoch"]
    assert a[pd_cols].astype(float).fillna(-1).equals(b[pd_cols].astype(float).fillna(-1))
    pa, pb = tables.paired_table(evals, "popularity"), tables.paired_table(back, "popularity")
    assert pa.equals(pb)
    with pytest.raises(FileNotFoundError, match="no committed results"):
        published.read_runs(tmp_path, "toy")


def test_chapter_08_redraws_the_committed_quick_results_without_training(tmp_path, monkeypatch):
    import papermill as pm

    from llmrec.core.io import repo_root
    from llmrec.experiments.published import read_runs

    committed = repo_root() / "results" / "quick" / "08_lite"
    if not committed.exists():
        pytest.skip("no committed quick results (make results-lite)")
    monkeypatch.setenv("LLMREC_FIGURES", str(tmp_path / "figures"))
    monkeypatch.setenv("LLMREC_RUNS", str(tmp_path / "runs"))
    nb = repo_root() / "notebooks" / "08_lite_llm4rec.ipynb"
    pm.execute_notebook(str(nb), str(tmp_path / "08.ipynb"), parameters={"profile": "quick", "results": "quick"},
                        kernel_name="python3", cwd=str(nb.parent), progress_bar=False)
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing evaluated
    for name in ("08_accuracy", "08_ablations", "08_inference_cost"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 1000
    back = read_runs(committed, "toy")
    assert back["Lite-LLM4Rec"][1]["n_users"] == len(load_dataset("toy").test)

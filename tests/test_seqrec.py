"""SASRec / GRU4Rec: learning on the synthetic catalogue, causality, evaluation protocol, resume, run cache."""

import math

import numpy as np
import pytest
import torch

import llmrec.itemseq.loop as T
from llmrec import runs, seqrec
from llmrec.bench import bench_seqrec
from llmrec.core import rundir
from llmrec.core.metrics import entry_values, summarize
from llmrec.core.profiles import train_config
from llmrec.data import load_dataset
from llmrec.experiments import classic_protocol
from llmrec.experiments.classic_losses import popularity_summary
from llmrec.experiments.classic_protocol import (CHOSEN_DEFAULT, PROTOCOL_LOSSES, PROTOCOL_VARIANTS, REFERENCE_CODE,
                                                 classic_reference, protocol_grid,
                                                 protocol_selection, protocol_table, protocol_variants,
                                                 sce_protocol_variants)
from llmrec.experiments.profile_runs import seqrec_config
from llmrec.experiments.published import slug
from llmrec.seqrec.config import MODEL_DEFAULTS


@pytest.fixture(autouse=True)
def runs_root(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


def smoke(**kw):
    return seqrec.complete(train_config("smoke", "seqrec", **kw))


@pytest.mark.parametrize("model", ["sasrec", "gru4rec", "caser"])
def test_model_beats_popularity_on_synthetic(model):
    pop = popularity_summary("synthetic", "test")["ndcg@10"]
    run_dir = seqrec.train(smoke(model=model, loss="ce"), progress=False)
    res = runs.evaluate(run_dir, "test", progress=False)
    assert res["summary"]["ndcg@10"] > pop + 0.05, (res["summary"], pop)
    log = rundir.read_log(run_dir)
    assert [r["epoch"] for r in log] == list(range(1, len(log) + 1))
    assert {"loss", "seconds", "valid_ndcg@10"} <= set(log[0])
    done = rundir.read_json(run_dir / "done.json")
    assert 1 <= done["best_epoch"] <= len(log) and done["seconds_per_epoch"] > 0 and "memory_method" in done
    assert rundir.load_metrics(run_dir)["test/full/nall"]["summary"] == res["summary"]


@pytest.mark.parametrize("loss", ["bce", "bpr", "sampled-softmax", "sce"])
def test_every_loss_trains(loss):
    cfg = smoke(loss=loss, epochs=2, patience=None)
    run_dir = seqrec.train(cfg, progress=False)
    log = rundir.read_log(run_dir)
    assert len(log) == 2 and all(np.isfinite(r["loss"]) for r in log)


def test_sasrec_is_causal_and_padding_invariant():
    torch.manual_seed(0)
    m = seqrec.SASRec(50, hidden=16, blocks=2, heads=2, dropout=0.3, maxlen=12).eval()
    seq = torch.tensor([[0, 0, 3, 7, 9, 11, 4, 5], [1, 2, 3, 4, 5, 6, 7, 8]])
    out = m(seq)
    pert = seq.clone()
    pert[:, 5] = torch.tensor([40, 41])
    out2 = m(pert)
    assert torch.allclose(out[:, :5], out2[:, :5], atol=1e-6)
    assert not torch.allclose(out[:, 5:], out2[:, 5:], atol=1e-4)
    # more left padding changes nothing: positions are counted from the most recent item
    wide = torch.cat([torch.zeros(2, 4, dtype=torch.long), seq], 1)
    assert torch.allclose(m(wide)[:, 4:][seq != 0], out[seq != 0], atol=1e-5)


def test_gru4rec_is_causal_and_padding_invariant():
    torch.manual_seed(0)
    m = seqrec.GRU4Rec(50, hidden=16, blocks=1, dropout=0.3).eval()
    seq = torch.tensor([[0, 0, 3, 7, 9, 11], [1, 2, 3, 4, 5, 6]])
    pert = seq.clone()
    pert[:, 4] = 33
    out, out2 = m(seq), m(pert)
    assert torch.allclose(out[:, :4], out2[:, :4], atol=1e-6)
    wide = torch.cat([torch.zeros(2, 3, dtype=torch.long), seq], 1)
    assert torch.allclose(m(wide)[:, 3:][seq != 0], out[seq != 0], atol=1e-5)


def test_caser_is_causal_and_sees_only_its_window():
    torch.manual_seed(0)
    m = seqrec.Caser(50, hidden=16, window=3, dropout=0.3).eval()
    seq = torch.tensor([[0, 0, 3, 7, 9, 11, 4, 5], [1, 2, 3, 4, 5, 6, 7, 8]])
    out = m(seq)
    pert = seq.clone()
    pert[:, 4] = torch.tensor([40, 41])
    out2 = m(pert)
    assert torch.allclose(out[:, :4], out2[:, :4], atol=1e-6)  # the past does not see the change
    assert not torch.allclose(out[:, 4:7], out2[:, 4:7], atol=1e-5)  # the next `window` positions do
    assert torch.allclose(out[:, 7:], out2[:, 7:], atol=1e-6)  # beyond the window, nothing changes
    # brute force: position t equals the model run on the window ending at t alone
    for t in range(seq.shape[1]):
        win = seq[:, max(0, t - 2): t + 1]
        win = torch.cat([torch.zeros(2, 3 - win.shape[1], dtype=torch.long), win], 1)
        assert torch.allclose(m(win)[:, -1], out[:, t], atol=1e-5)


def test_evaluation_equals_brute_force_ranking():
    run_dir = seqrec.train(smoke(epochs=2, patience=None), progress=False)
    res = runs.evaluate(run_dir, "test", progress=False)
    rec = seqrec.SeqRecommender.from_run(run_dir)
    model, cfg = rec.model, rec.cfg
    df = load_dataset("synthetic").test
    n_items = max(load_dataset("synthetic").items)
    brute = []
    for hist, target in zip(df["history"], df["target"]):  # one user at a time, no padding, all items
        h = torch.tensor([list(hist)[-cfg["maxlen"]:]])
        with torch.no_grad():
            s = (model(h)[0, -1] @ model.item_emb.weight.T).numpy()  # column = item id (0 = padding)
        brute.append(sum(1 for i in range(1, n_items + 1) if i != target and s[i] >= s[target]))
    assert res["ranks"] == brute
    assert res["user_ids"] == df["user_id"].tolist()
    assert res["summary"] == pytest.approx(summarize(np.array(brute)))


@pytest.mark.parametrize("model,loss", [("sasrec", "sce"), ("gru4rec", "bpr")])
def test_resume_equals_uninterrupted(tmp_path, model, loss):
    cfg = smoke(model=model, loss=loss, epochs=3, patience=None)
    full = seqrec.train(cfg, run_dir=tmp_path / "full", progress=False)
    part = tmp_path / "part"
    seqrec.train({**cfg, "epochs": 1}, run_dir=part, progress=False)  # stopped after epoch 1
    seqrec.train({**cfg, "epochs": 2}, run_dir=part, progress=False)  # continued
    # a crash in the middle of epoch 3, then a restart with the same config
    real = T.batch_loss
    calls = {"n": 0}

    def crash(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    T.batch_loss = crash
    try:
        with pytest.raises(KeyboardInterrupt):
            seqrec.train(cfg, run_dir=part, progress=False)
    finally:
        T.batch_loss = real
    assert not rundir.is_done(part)
    assert rundir.read_json(part / "failed.json")["error"].startswith("KeyboardInterrupt")  # marked, not done
    seqrec.train(cfg, run_dir=part, progress=False)
    assert not (part / "failed.json").exists()  # the attempt that finished cleared the mark

    keys = ("epoch", "loss", "valid_ndcg@10")
    assert [{k: r[k] for k in keys} for r in rundir.read_log(part)] == \
           [{k: r[k] for k in keys} for r in rundir.read_log(full)]
    for name in ("model.pt", "checkpoints/epoch-3/checkpoint.pt"):
        a = torch.load(full / name, weights_only=False)["model"]
        b = torch.load(part / name, weights_only=False)["model"]
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert rundir.read_json(part / "done.json")["best_epoch"] == rundir.read_json(full / "done.json")["best_epoch"]


def test_run_cache_returns_without_training(runs_root, monkeypatch):
    cfg = smoke(epochs=1)
    run_dir = seqrec.train(cfg, progress=False)
    assert run_dir.parent == runs_root and (run_dir / "identity.json").exists()
    assert rundir.is_done(run_dir)

    def boom(*a, **k):
        raise AssertionError("trained again")

    monkeypatch.setattr(T, "batch_loss", boom)
    assert seqrec.train(dict(cfg), progress=False) == run_dir
    # partial configs are completed with the defaults before hashing
    partial = {k: v for k, v in cfg.items() if v != seqrec.DEFAULTS.get(k)}
    assert seqrec.train(partial, progress=False) == run_dir
    # another configuration in the same directory is refused
    with pytest.raises(ValueError):
        seqrec.train({**cfg, "lr": 0.1}, run_dir=run_dir, progress=False)


def test_config_validation():
    with pytest.raises(ValueError):
        smoke(loss="hinge")
    with pytest.raises(ValueError):
        smoke(nonsense=1)
    with pytest.raises(ValueError):
        train_config("nope", "seqrec")
    assert seqrec.complete(train_config("paper", "seqrec")) == {**seqrec.DEFAULTS, **MODEL_DEFAULTS["sasrec"],
                                                                "profile": "paper"}
    with pytest.warns(FutureWarning, match="now called 'paper'"):  # the old name of the papers' profile
        assert train_config("full", "seqrec") == train_config("paper", "seqrec")


def test_the_study_s_sasrec_is_the_chosen_default_and_the_cached_runs_keep_their_keys():
    """train_config gives SASRec the options chosen on validation (issue 26), and only SASRec; a caller's option
    wins; the reference code's values stay out of config.json, so runs cached before keep their keys."""
    chosen = MODEL_DEFAULTS["sasrec"]
    assert chosen.items() <= seqrec.complete(train_config("quick", "seqrec", loss="ce")).items()
    for model in ("gru4rec", "caser"):
        assert not set(chosen) & set(seqrec.complete(train_config("quick", "seqrec", model=model)))
    assert seqrec.complete(train_config("quick", "seqrec", init="torch"))["init"] == "torch"
    reference = seqrec.complete(train_config("quick", "seqrec", **REFERENCE_CODE))
    assert not set(chosen) & set(reference)  # omitted at the reference's values: the key of a run made before
    assert {k: seqrec.REFERENCE[k] for k in chosen} == REFERENCE_CODE != chosen
    with pytest.raises(ValueError, match="init"):  # the chosen values are the class's own choices
        seqrec.complete({**chosen, "init": "orthogonal"})


def test_bench_reports_ce_and_sce():
    out = bench_seqrec("synthetic", profile="smoke", epochs=1, K=20, fresh_process=False)
    for name in ("ce", "sce"):
        assert out[name]["seconds_per_epoch"] > 0 and out[name]["peak_memory_mb"] >= 0
    assert out["sce"]["score_matrix_mb"] < out["ce"]["score_matrix_mb"]
    assert out["memory_method"]


def test_a_dataset_prepared_again_in_the_same_folder_is_a_new_run(tmp_path):
    """The run cache is keyed by the dataset's content, not its path: new data never meets old results."""
    from llmrec.data import load_dataset, save_dataset

    import copy

    folder = tmp_path / "mydata"
    ds = copy.copy(load_dataset("synthetic"))  # a copy: the loaded one is shared
    save_dataset(ds, folder)
    first = seqrec.train(smoke(dataset=str(folder), epochs=1), progress=False)
    assert seqrec.train(smoke(dataset=str(folder), epochs=1), progress=False) == first  # same data: cached
    ds.train = ds.train.iloc[: len(ds.train) // 2]
    save_dataset(ds, folder)  # prepared again in place
    second = seqrec.train(smoke(dataset=str(folder), epochs=1), progress=False)
    assert second != first and rundir.is_done(second)
    assert rundir.read_json(second / "done.json")["n_train_windows"] == len(ds.train)



TIMING = ("seconds", "valid_seconds", "seconds_per_user")


def _without_timings(x):
    if isinstance(x, dict):
        return {k: _without_timings(v) for k, v in x.items() if k not in TIMING}
    return [_without_timings(v) for v in x] if isinstance(x, list) else x


@pytest.mark.parametrize("loss", ["ce", "sce"])
def test_the_same_config_trains_to_the_same_model_in_another_process(loss, tmp_path):
    """Determinism: one run here, the same configuration in a fresh process (another hash seed), each in its own
    run dir: the same losses, validation, test metrics and weights, bit for bit (on the same number of threads:
    CPU reductions such as LayerNorm's backward sum in a thread-dependent order)."""
    import json
    import os
    import subprocess
    import sys

    cfg = smoke(model="sasrec", loss=loss, epochs=3, patience=None)
    here = seqrec.train(cfg, run_dir=tmp_path / "here", progress=False)
    runs.evaluate(here, "test", progress=False)
    there = tmp_path / "there"
    code = ("import sys, json, torch; torch.set_num_threads(int(sys.argv[1])); from llmrec import runs, seqrec; "
            "r = seqrec.train(json.loads(sys.argv[2]), run_dir=sys.argv[3], progress=False); "
            "runs.evaluate(r, 'test', progress=False)")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code, str(torch.get_num_threads()), json.dumps(cfg), str(there)],
                   check=True, env=env, timeout=300)
    assert _without_timings(rundir.read_log(here)) == _without_timings(rundir.read_log(there))
    assert _without_timings(rundir.load_metrics(here)) == _without_timings(rundir.load_metrics(there))
    assert rundir.read_json(here / "done.json")["best_epoch"] == rundir.read_json(there / "done.json")["best_epoch"]
    for name in ("model.pt", "checkpoints/epoch-3/checkpoint.pt"):
        a = torch.load(here / name, weights_only=False)["model"]
        b = torch.load(there / name, weights_only=False)["model"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


# ----------------------------------------------------------------------------- departures from the reference SASRec


def test_the_reference_options_are_the_reference_model_and_keep_run_keys():
    torch.manual_seed(0)
    a = seqrec.SASRec(40, hidden=16, blocks=2, heads=2, dropout=0.0, maxlen=8).eval()
    torch.manual_seed(0)
    b = seqrec.SASRec(40, hidden=16, blocks=2, heads=2, dropout=0.0, maxlen=8, norm="pre", ffn_act="relu",
                      ffn_mult=1, emb_scale=True, init="xavier").eval()
    seq = torch.tensor([[0, 0, 3, 7, 9, 11, 4, 5]])
    assert torch.equal(a(seq), b(seq))
    explicit = smoke(loss="ce", **seqrec.REFERENCE)
    # stating the reference's values changes nothing, not even the run's key; the study's SASRec is another run
    assert explicit == smoke(loss="ce", **REFERENCE_CODE) == seqrec.complete({**explicit, "family": "seqrec"})
    assert explicit != smoke(loss="ce") and not set(seqrec.REFERENCE) & set(explicit)
    assert smoke(loss="ce", norm="post")["norm"] == "post"
    with pytest.raises(ValueError, match="norm must be one of"):
        smoke(norm="sideways")


@pytest.mark.parametrize("opts", [dict(norm="post"), dict(ffn_act="gelu", ffn_mult=4), dict(emb_scale=False),
                                  dict(init="normal"), dict(init="torch")])
def test_every_sasrec_variant_is_causal_and_padding_invariant(opts):
    torch.manual_seed(0)
    m = seqrec.SASRec(50, hidden=16, blocks=2, heads=2, dropout=0.3, maxlen=12, **opts).eval()
    seq = torch.tensor([[0, 0, 3, 7, 9, 11, 4, 5], [1, 2, 3, 4, 5, 6, 7, 8]])
    out = m(seq)
    pert = seq.clone()
    pert[:, 5] = torch.tensor([40, 41])
    assert torch.allclose(m(pert)[:, :5], out[:, :5], atol=1e-6)
    wide = torch.cat([torch.zeros(2, 4, dtype=torch.long), seq], 1)
    assert torch.allclose(m(wide)[:, 4:], out, atol=1e-5)
    if "norm" in opts:  # post-LN: each block ends with a LayerNorm, no final one
        assert isinstance(m.last_norm, torch.nn.Identity)
    if "ffn_mult" in opts:
        assert m.ffns[0][0].out_features == 64 and isinstance(m.ffns[0][1], torch.nn.GELU)


def test_negatives_per_position_equal_a_float64_loop():
    from llmrec.core.samplers import uniform
    from llmrec.itemseq.objectives import batch_loss

    torch.manual_seed(0)
    m = seqrec.SASRec(30, hidden=8, blocks=1, heads=1, dropout=0.0, maxlen=6).eval()
    seqs = torch.tensor([[0, 0, 3, 7, 9, 12], [1, 2, 3, 4, 5, 6]])
    cfg = {"loss": "sce", "negatives": 4, "alpha": 10.0, "negatives_per": "position"}
    got = batch_loss(m, seqs, cfg, 30, torch.Generator().manual_seed(5), torch.device("cpu"))
    h = m(seqs[:, :-1]).detach().double()
    E = m.item_emb.weight.detach().double()
    lab = seqs[:, 1:]
    pos = [(r, t) for r in range(2) for t in range(5) if lab[r, t] != 0]
    neg = uniform(30, (len(pos), 4), torch.Generator().manual_seed(5))  # the same draws, one row per position
    terms = []
    for (r, t), ks in zip(pos, neg):
        sp = float(h[r, t] @ E[lab[r, t]])
        sn = [float(h[r, t] @ E[k]) + math.log(10.0) for k in ks]
        terms.append(float(np.logaddexp.reduce([sp] + sn)) - sp)
    assert math.isclose(float(got.detach()), float(np.mean(terms)), rel_tol=1e-5)


def test_adam_beta2_option_reaches_the_optimiser(tmp_path):
    run = seqrec.train(smoke(loss="ce", epochs=1, adam_beta2=0.999), run_dir=tmp_path / "r", progress=False)
    ck = torch.load(run / "checkpoints/epoch-1/checkpoint.pt", weights_only=False)
    assert ck["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)


def test_protocol_grid_writes_each_run_resumes_and_tables_seeds(tmp_path, monkeypatch):
    variants = {"SASRec + CE": {"loss": "ce"}, "CE, post-LN blocks": {"loss": "ce", "norm": "post"}}
    evals = protocol_grid("smoke", "synthetic", variants, seeds=(0, 1), folder=tmp_path, progress=False)
    assert sorted(evals) == sorted(f"{v} / seed {s}" for v in variants for s in (0, 1))
    assert len(list(tmp_path.glob("synthetic-*.json"))) == 4
    monkeypatch.setattr(runs, "train", lambda *a, **k: pytest.fail("a finished run was trained again"))
    again = protocol_grid("smoke", "synthetic", variants, seeds=(0, 1), folder=tmp_path, progress=False)
    assert sorted(again) == sorted(evals)
    t = protocol_table(again)
    assert t.loc["SASRec + CE", "seeds"] == 2 and np.isnan(t.loc["SASRec + CE", "diff"])
    # the paired difference is the per-user mean over seeds, variant minus baseline
    per_user = lambda name: np.mean([entry_values(again[f"{name} / seed {s}"][1], "ndcg@10") for s in (0, 1)], 0)
    assert math.isclose(t.loc["CE, post-LN blocks", "diff"],
                        float((per_user("CE, post-LN blocks") - per_user("SASRec + CE")).mean()), abs_tol=1e-12)
    assert t.loc["CE, post-LN blocks", "lo"] <= t.loc["CE, post-LN blocks", "diff"] <= t.loc["CE, post-LN blocks", "hi"]


def test_learning_rates_are_chosen_on_validation_and_a_changed_choice_retrains(tmp_path, monkeypatch):
    """protocol_selection trains each loss at each rate (validation only: no test evaluation), chooses the best
    validation NDCG@10; protocol_variants carries the choice; protocol_grid replaces a result made at another rate."""
    from llmrec.core.io import read_json
    from llmrec.core.results import read_record

    names = ("SASRec + CE", "SASRec + BCE")
    sel = protocol_selection("smoke", "synthetic", lrs=(1e-3, 1e-2), names=names, folder=tmp_path / "sel",
                             progress=False, beyond=(), below=())
    assert len(sel) == 4 and sel["chosen"].sum() == 2
    # a best at the largest rate tried sends that loss (only) one rate further
    wider = protocol_selection("smoke", "synthetic", lrs=(1e-3, 1e-2), names=names, folder=tmp_path / "sel",
                               progress=False, beyond=(3e-2,), below=())
    for name in names:
        at_edge = int(sel.loc[name].query("chosen").index[0] == 1e-2)
        assert list(wider.loc[name].index) == [1e-3, 1e-2] + [3e-2] * at_edge
    for name in names:
        rows = sel.loc[name]
        assert rows.loc[rows["chosen"]].index[0] == rows["valid ndcg@10"].idxmax()  # the best on validation
        for lr in (1e-3, 1e-2):  # independent check: the run's own logged best validation NDCG@10
            r = read_record(tmp_path / "sel" / f"synthetic-{slug(name)}-lr-{lr:g}.json")
            assert r.training.best_valid["ndcg@10"] == sel.loc[(name, lr), "valid ndcg@10"] and not r.evaluations
            run = runs.train(seqrec_config("smoke", "synthetic", seed=0, **{**PROTOCOL_VARIANTS[name], "lr": lr}),
                             progress=False)
            assert "metrics.json" not in {p.name for p in run.iterdir()}  # no test window was evaluated
    variants = protocol_variants(sel)
    ce_lr = sel.loc["SASRec + CE"].query("chosen").index[0]
    assert variants["SASRec + CE"]["lr"] == ce_lr and variants["CE, post-LN blocks"]["lr"] == ce_lr
    with pytest.raises(FileNotFoundError, match="no committed learning-rate selection"):
        protocol_selection("smoke", "synthetic", lrs=(5e-2,), names=names, folder=tmp_path / "sel", train=False)
    one = {"SASRec + CE": {"loss": "ce", "lr": 1e-3}}
    protocol_grid("smoke", "synthetic", one, seeds=(0,), folder=tmp_path / "grid", progress=False)
    path = tmp_path / "grid" / "synthetic-sasrec-ce-seed-0.json"
    assert read_json(path)["config"]["lr"] == 1e-3
    protocol_grid("smoke", "synthetic", {"SASRec + CE": {"loss": "ce", "lr": 1e-2}}, seeds=(0,),
                  folder=tmp_path / "grid", progress=False)
    assert read_json(path)["config"]["lr"] == 1e-2  # made again at the new rate, not read back


def test_the_classic_reference_runs_every_variant_on_toy_and_the_losses_on_books(monkeypatch):
    calls = []
    monkeypatch.setattr(classic_protocol, "protocol_selection", lambda profile, dataset, progress: None)
    monkeypatch.setattr(classic_protocol, "protocol_grid", lambda profile, dataset, variants, seeds, progress:
                        calls.append((dataset, tuple(variants), tuple(seeds))) or {})
    classic_reference("laptop", "toy", progress=False)
    assert calls == [("toy", tuple(PROTOCOL_VARIANTS), (0, 1, 2)), ("toy", tuple(sce_protocol_variants()), (0,))]
    calls.clear()
    classic_reference("laptop", "books", progress=False)
    assert calls == [("books", (*PROTOCOL_LOSSES, CHOSEN_DEFAULT), (0, 1, 2))]
    calls.clear()
    classic_reference("laptop", "books", names=["SASRec + CE"], grid=True, progress=False)
    assert [c[1] for c in calls] == [("SASRec + CE",), tuple(sce_protocol_variants())]


def test_the_sasrec_runs_beside_the_llms_are_the_protocols_ce_and_sce_at_their_plateau(monkeypatch):
    """Chapters 07 and 08 put SASRec + CE and + SCE (K 500, α 100) beside the LLM runs: the protocol's two variants,
    trained with patience 5 and at most 50 epochs, with the chapter's device and seed."""
    from llmrec.experiments.sasrec_vs_llm import sasrec_plateau

    monkeypatch.setattr(runs, "train", lambda config, progress=True: config)
    got = sasrec_plateau("quick", "toy", seed=3)
    assert list(got) == ["SASRec + CE", "SASRec + SCE (K 500, α 100)"]
    ce, sce = got.values()
    assert ce["loss"] == "ce" and (sce["loss"], sce["negatives"], sce["alpha"]) == ("sce", 500, 100.0)
    for c in (ce, sce):
        assert (c["family"], c.get("model", "sasrec"), c["dataset"], c["epochs"], c["patience"], c["seed"]) == (
            "seqrec", "sasrec", "toy", 50, 5, 3)


def test_the_learning_rate_search_goes_past_the_edge_only_while_the_best_is_there(tmp_path):
    """The selection rule on hand-written selection files (nothing trains; train=False reads them): a best at the
    largest (smallest) rate tried sends the loss one larger (smaller) rate further; ties go to the smallest rate."""
    from llmrec.core.results import Provenance, RunRecord, Training, write_record

    scores = {"SASRec + CE": {1e-3: 0.1, 1e-2: 0.3, 3e-2: 0.2},  # upper edge -> 3e-2, worse: stop at 1e-2
              "SASRec + BCE": {3e-4: 0.1, 1e-3: 0.2, 1e-2: 0.1},  # lower edge -> 3e-4, worse: stop at 1e-3
              "SASRec + BPR": {3e-4: 0.05, 1e-3: 0.1, 1e-2: 0.1},  # a tie: the smaller rate, which is the edge
              "SASRec + sampled softmax (K 500)": {1e-4: 0.4, 3e-4: 0.3, 1e-3: 0.2, 1e-2: 0.1}}  # down to the end
    for name, by_lr in scores.items():
        for lr, v in by_lr.items():
            write_record(tmp_path / f"toy-{slug(name)}-lr-{lr:g}.json", RunRecord(
                name=name, what="a hand-written selection run", family="seqrec", profile="laptop", dataset="toy",
                dataset_fingerprint="x", config={"lr": lr}, extra={"lr": lr},
                training=Training(best_epoch=3, epochs_run=8, epochs_cap=50, best_valid={"ndcg@10": v},
                                  seconds_total=1.0, facts={"peak_memory_mb": 1.0}),
                provenance=Provenance(machine="m", commit="c", date="d")))
    # rates inside the given ones (5e-3, 2e-3) are never tried; nothing beyond a file asked for exists
    sel = protocol_selection("laptop", "toy", lrs=(1e-2, 1e-3), names=tuple(scores), folder=tmp_path,
                             train=False, beyond=(5e-3, 3e-2, 1e-1), below=(2e-3, 3e-4, 1e-4))
    for name, by_lr in scores.items():
        assert list(sel.loc[name].index) == sorted(by_lr), name
    assert {v: lr for (v, lr), c in sel["chosen"].items() if c} == {
        "SASRec + CE": 1e-2, "SASRec + BCE": 1e-3, "SASRec + BPR": 1e-3, "SASRec + sampled softmax (K 500)": 1e-4}

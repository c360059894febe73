"""`make bench` writes the files docs/benchmarks.md quotes: bench/<name>.json per benchmark (the measuring is stubbed)."""

import json

import pytest

from llmrec import bench


def test_make_bench_writes_one_file_per_benchmark(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "smollm2_cache", lambda: None)
    for name in bench.BENCHMARKS + bench.BY_NAME_ONLY:
        monkeypatch.setattr(bench, f"bench_{name}", lambda *a, _n=name, **k: {"stub": _n})
    res = bench.run_bench("all", out_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.json" for n in bench.BENCHMARKS)
    assert "cuda" not in bench.BENCHMARKS and bench.BY_NAME_ONLY == ("cuda",)  # a GPU's: never in "all"
    for name in bench.BENCHMARKS:
        one = json.loads((tmp_path / f"{name}.json").read_text())
        want = {ds: {"stub": name} for ds in bench.SEQREC_DATASETS} if name == "seqrec" else {"stub": name}
        assert one[name] == want == res[name] and {"machine", "when"} <= set(one)
    bench.run_bench("cuda", out_dir=tmp_path / "gpu")
    assert json.loads((tmp_path / "gpu" / "cuda.json").read_text())["cuda"] == {"stub": "cuda"}
    bench.run_bench("losses", out_dir=tmp_path / "one")
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["losses.json"]
    bench.run_bench("trie", out=str(tmp_path / "x.json"), out_dir=tmp_path / "none")
    assert json.loads((tmp_path / "x.json").read_text())["trie"] == {"stub": "trie"}
    assert not (tmp_path / "none").exists()
    with pytest.raises(ValueError, match="unknown benchmark 'nope'"):
        bench.run_bench("nope")


def test_the_docs_name_the_file_make_bench_writes():
    from llmrec.core.io import repo_root

    page = (repo_root() / "docs" / "benchmarks.md").read_text()
    make = (repo_root() / "Makefile").read_text()
    assert "-m llmrec bench all" in make
    assert "`bench/losses.json`" in page and "bench/all.json" not in page
    assert (repo_root() / "bench" / "losses.json").exists()


def test_the_gpu_benchmark_runs_its_cpu_path_in_smoke_form():
    """bench/cuda.json's measuring, on the CPU at the smoke profile (tiny model, synthetic data): every figure
    the issue asks for is there, finite and positive."""
    import math

    res = bench.bench_cuda(device="cpu", profile="smoke", users=2, exact_users=1, dataset="synthetic", model="tiny",
                           lite_windows=64)
    s = res["summary"]
    assert s["device"] == "cpu" and s["gpu"] is None and s["profile"] == "smoke"
    assert set(s["train"]) == set(bench.TRAIN_LOSSES)
    for loss, settings in s["train"].items():
        assert "one batch per forward (today)" in settings
        for x in settings.values():
            assert all(math.isfinite(v) and v > 0 for v in x.values()), loss
    for key in ("beam_users_per_s", "exact_ms_per_user", "likelihood_ms_per_user", "lite_ms_per_user",
                "lite_epoch_seconds_per_1000_windows"):
        assert math.isfinite(s[key]) and s[key] > 0, key
    assert s["lite_rec_layers"] == 2 and res["lite"]["lite_windows"] == 64

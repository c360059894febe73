"""`make bench` writes the files docs/benchmarks.md quotes: bench/<name>.json per benchmark (the measuring is stubbed)."""

import json

import pytest

from llmrec import bench


def test_make_bench_writes_one_file_per_benchmark(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "smollm2_cache", lambda: None)
    for name in bench.BENCHMARKS:
        monkeypatch.setattr(bench, f"bench_{name}", lambda *a, _n=name, **k: {"stub": _n})
    res = bench.run_bench("all", out_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["decode.json", "losses.json", "seqrec.json", "trie.json"]
    for name in bench.BENCHMARKS:
        one = json.loads((tmp_path / f"{name}.json").read_text())
        want = {ds: {"stub": name} for ds in bench.SEQREC_DATASETS} if name == "seqrec" else {"stub": name}
        assert one[name] == want == res[name] and {"machine", "when"} <= set(one)
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

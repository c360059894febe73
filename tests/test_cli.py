import json
import subprocess
import sys

import pytest

from llmrec.cli import main


def test_unknown_loss_dataset_and_device_are_named(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_RUNS", str(tmp_path))
    assert main(["train", "--profile", "smoke", "--loss", "nope"]) == 2
    assert "unknown loss 'nope'" in capsys.readouterr().err
    assert main(["train", "--profile", "smoke", "--dataset", "no-such-data", "--loss", "lml"]) == 2
    assert "no-such-data" in capsys.readouterr().err
    assert main(["train", "--profile", "smoke", "--loss", "lml", "--device", "cuda:7"]) == 2
    assert "cuda:7" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nothing")]) == 2
    assert "nothing" in capsys.readouterr().err
    assert main(["train", "--profile", "smoke", "--loss", "lml", "--lora-layers", "0"]) == 2
    assert "--lora-layers: must be > 0" in capsys.readouterr().err
    assert main(["train", "--profile", "smoke", "--loss", "lml", "--max-steps", "-2"]) == 2
    assert "--max-steps: must be > 0, got -2" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path), "--users", "0"]) == 2
    assert "--users: must be > 0" in capsys.readouterr().err


def test_train_then_evaluate_through_the_cli(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_RUNS", str(tmp_path))
    monkeypatch.setenv("LLMREC_FROZEN", str(tmp_path / "frozen"))
    assert main(["train", "--profile", "smoke", "--loss", "msl-ats", "--lora-layers", "1", "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    run = out[0]
    assert json.loads("\n".join(out[1:]))["ndcg@10"] >= 0
    assert main(["evaluate", run, "--mode", "full", "--users", "2"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n_users"] == 2 and res["summary"]["hr@10"] in (0.0, 0.5, 1.0)
    metrics = json.loads((tmp_path / run.split("/")[-1] / "metrics.json").read_text())
    assert {"test/beam/n8/k4", "test/full/n2"} <= set(metrics)
    assert json.loads((tmp_path / run.split("/")[-1] / "config.json").read_text())["lora_layers"] == 1
    assert main(["evaluate", run, "--mode", "likelihood", "--users", "3"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n_users"] == 3 and res["summary"]["nll_full"] >= res["summary"]["nll_valid"] > 0
    assert main(["compare", run, run, "--key", "test/likelihood/n3"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["metric"] for r in rows] == ["nll_valid", "nll_full"] and all(r["diff"] == 0 for r in rows)
    assert main(["evaluate", run, "--users", "2", "--beams", "4", "--beam-score", "valid"]) == 0
    assert json.loads(capsys.readouterr().out)["n_users"] == 2
    metrics = json.loads((tmp_path / run.split("/")[-1] / "metrics.json").read_text())
    assert "test/beam/n2/k4/score-valid" in metrics and "test/beam/n2/k4" not in metrics  # its own evaluation
    assert main(["evaluate", run, "--mode", "full", "--beam-score", "valid"]) == 2
    assert "only for LLM beam search" in capsys.readouterr().err
    assert list((tmp_path / "frozen").rglob("*.pt"))


def test_help_and_check_start_without_torch():
    """The model libraries are imported by the subcommands that use them: --help and check answer at once."""
    code = ("import sys; from llmrec.cli import main; main(['check', 'toy']); "
            "print(sorted(m for m in ('torch', 'transformers', 'peft', 'papermill') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "no problems" in out.stdout and out.stdout.splitlines()[-1] == "[]"


def test_an_unexpected_error_is_one_line_unless_debugging(monkeypatch, capsys):
    import llmrec.cli as cli

    def boom(*args, **kwargs):
        raise ZeroDivisionError("division by zero\nin a user's file")

    monkeypatch.setattr(cli, "check_dataset", boom)
    assert main(["check", "toy"]) == 2
    assert capsys.readouterr().err == ("llmrec check: error: ZeroDivisionError: division by zero in a user's file "
                                       "(--debug or LLMREC_DEBUG=1 shows the traceback)\n")
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "check", "toy"])
    monkeypatch.setenv("LLMREC_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["check", "toy"])

"""The benchmarks' generated tables and values (:mod:`.doc_tables`), from ``bench/*.json`` (``make bench``)."""

from __future__ import annotations

from ..core.io import read_json, repo_root
from .doc_format import markdown, table, values

# ---------------------------------------------------------------------------------- bench/*.json (make bench)


def _bench(name: str) -> dict:
    path = repo_root() / "bench" / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no benchmark {path} (make bench)")
    return read_json(path)


def _ratio(x: float) -> str:
    return f"{x:.1f}×"


@table
def bench_training_step() -> str:
    """``bench/losses.json``: one LoRA training step under each loss implementation, median of 3."""
    b = _bench("losses")["losses"]["variants"]
    what = {"a": r"a. HF forward with full logits everywhere + dense \|response\|×\|V\| masks + `-inf`",
            "b": "b. fast MSL (response positions only, projected onto their valid tokens)",
            "c": "c. transformer body alone, fwd + bwd, no head (the floor)"}
    return markdown([{"variant": what[k], "step [s]": f"{v['step_seconds']:.2f}",
                      "peak RSS [GB]": f"{v['peak_rss_mb'] / 1000:.2f}"} for k, v in b.items()], "lrr")


SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def sci(x: float) -> str:
    """``x`` as the pages write a small number: 2.4·10⁻⁴."""
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa}·10{str(int(exponent)).translate(SUPERSCRIPT)}"


@table
def bench_decode() -> str:
    """``bench/decode.json``: seconds per user one user at a time against batched, and decoder positions."""
    d = _bench("decode")["decode"]
    out = []
    for threads in sorted((k for k in d if k.startswith("threads=")), key=lambda k: -int(k.split("=")[1])):
        for key, what in (("beam", "beam search"), ("exact", "exact ranking"), ("likelihood", "likelihood")):
            r = d[threads][key]
            out.append({"torch threads": threads.split("=")[1], "what": what,
                        "one user at a time [s/user]": f"{r['per_user']['seconds_per_user']:.2f}",
                        "batched [s/user]": f"{r['batched']['seconds_per_user']:.2f}",
                        "ratio": f"{r['speedup']:.2f}×",
                        "positions per user": f"{r['per_user']['decoder_positions_per_user']:,.0f} → "
                                              f"{r['batched']['decoder_positions_per_user']:,.0f}"})
    return markdown(out, "rlrrrr")


@values
def bench() -> dict[str, str]:
    """The benchmarks in the prose: the training step's ratios, masks, SASRec CE against SCE, batched decoding."""
    out = {}
    losses = _bench("losses")
    b = losses["losses"]
    v = b["variants"]
    batch = v["b"]["batch"]
    out.update({"losses.when": losses["when"][:10], "losses.windows": str(batch["windows"]),
                "losses.tokens": f"{batch['tokens']:,}", "losses.positions": str(batch["response_positions"]),
                "losses.b_over_c": f"{b['ratio_b_over_c']:.2f}", "losses.a_over_b": f"{b['ratio_a_over_b']:.2f}",
                "losses.a_over_c": f"{v['a']['step_seconds'] / v['c']['step_seconds']:.2f}",
                "losses.body_share": f"{v['c']['step_seconds'] / v['a']['step_seconds']:.0%}"})
    trie = _bench("trie")
    t = trie["trie"]
    masks = t["toy"]["batch_mask_bytes"]
    out.update({"trie.when": trie["when"][:10], "trie.dense_over_ragged": f"{masks['dense_over_ragged']:,.0f}",
                "trie.ragged": f"{masks['ragged'] / 1000:.0f} KB", "trie.dense": f"{masks['dense'] / 1e6:.1f} MB"})
    for ds in ("toy", "books"):
        out[f"trie.{ds}.tensor"] = f"{t[ds]['trie_tensor_bytes'] / 1e6:.1f} MB"
        out[f"trie.{ds}.ratio"] = f"{t[ds]['catalogue_ratio']:,.0f}"
        out[f"trie.{ds}.dense_all"] = f"{t[ds]['dense_masks_all_titles_bytes'] / 1e9:.1f} GB"
        out[f"trie.{ds}.build_s"] = f"{t[ds]['build_seconds']:.2f}"  # the median of the bench's repeats
        out[f"trie.{ds}.avt_targets"] = f"{t[ds]['AVT (train targets)']:.2f}"
        out[f"trie.{ds}.avt_items"] = f"{t[ds]['AVT (items)']:.2f}"
    seq = _bench("seqrec")
    out["seqrec.when"] = seq["when"][:10]
    for ds in ("toy", "books"):
        r = seq["seqrec"][ds]
        ce, sce = r["ce"], r["sce"]
        for loss, x in (("ce", ce), ("sce", sce)):
            out.update({f"seqrec.{ds}.{loss}_s": f"{x['seconds_per_epoch']:.2f}",
                        f"seqrec.{ds}.{loss}_mb": f"{x['peak_memory_mb']:.0f}",
                        f"seqrec.{ds}.{loss}_matrix": f"{x['score_matrix_mb']:.0f} MB"})
        out.update({f"seqrec.{ds}.speed": _ratio(r["speedup_sce_vs_ce"]),
                    f"seqrec.{ds}.memory": _ratio(r["memory_ratio_ce_vs_sce"])})
    dec = _bench("decode")
    d = dec["decode"]["threads=2"]
    positions = d["exact"]["batched"]["decoder_positions_per_user"] / d["beam"]["batched"]["decoder_positions_per_user"]
    out.update({"decode.when": dec["when"][:10], "decode.users": str(dec["decode"]["users"]),
                "decode.exact_users": str(dec["decode"]["exact_users"]),
                "decode.beam.per_user": f"{d['beam']['per_user']['seconds_per_user']:.2f}",
                "decode.beam.batched": f"{d['beam']['batched']['seconds_per_user']:.2f}",
                "decode.beam.speedup": f"{d['beam']['speedup']:.2f}×",
                "decode.exact.per_user": f"{d['exact']['per_user']['seconds_per_user']:.2f}",
                "decode.exact.batched": f"{d['exact']['batched']['seconds_per_user']:.2f}",
                "decode.exact.over_beam": f"{d['exact']['batched exact / batched beam search, per user']:.0f}",
                "decode.load": " rising to ".join(f"{x:.2g}" for x in d["load_average"]),
                "decode.exact.over_per_user_beam":
                    f"{d['exact']['batched exact / per-user beam search, per user']:.0f}",
                "decode.exact.positions": f"{positions:.0f}",
                "decode.beam.per_user.runs": " s, the other ".join(
                    f"{x:.0f}" for x in sorted(d["beam"]["per_user"]["seconds"], reverse=True)) + " s"})
    every = [v for k, v in dec["decode"].items() if k.startswith("threads=")]
    out["decode.identical"] = "the same" if all(t["beam"]["identical_lists"] and t["exact"]["identical_ranks"]
                                                for t in every) else "not always the same"
    for key, gap in (("beam", "max_score_gap"), ("exact", "max_score_gap"), ("likelihood", "max_gap")):
        out[f"decode.{key}.gap"] = sci(max(t[key][gap] for t in every))
    like = d.get("likelihood")
    if like is not None:
        out.update({"decode.likelihood.per_user": f"{like['per_user']['seconds_per_user']:.2f}",
                    "decode.likelihood.batched": f"{like['batched']['seconds_per_user']:.2f}",
                    "decode.likelihood.speedup": f"{like['speedup']:.2f}×"})
    return out




# ---------------------------------------------------------------------------------- training throughput (bench train)


@table
def bench_train() -> str:
    """``bench/train.json``: each loss's settings side by side: seconds per optimiser step, windows/s, tokens/s,
    padding, the 6·N·tokens utilisation estimate and the speed against one batch per forward."""
    t = _bench("train")["train"]
    rows = []
    for loss, r in t["losses"].items():
        for name, x in r["settings"].items():
            rows.append({"loss": loss, "setting": name, "s/step": f"{x['seconds_per_step']:.1f}",
                         "windows/s": f"{x['windows_per_s']:.2f}", "tokens/s": f"{x['tokens_per_s']:,.0f}",
                         "padding": f"{x['padding']:.0%}", "utilisation": f"{x['utilisation']:.0%}",
                         "against today": _ratio(r["speedup_vs_today"][name])})
    return markdown(rows, "llrrrrrr")


@values
def train() -> dict[str, str]:
    """The training-throughput bench in the prose: when, where, its settings and each loss's ratio of a step in
    one forward to one batch per forward."""
    b = _bench("train")
    t = b["train"]
    loads = [x for r in t["losses"].values() for x in r["load_average"]]
    out = {"when": b["when"][:10], "profile": t["profile"], "device": t["device"],
           "windows": str(t["windows"]), "batch_size": str(t["batch_size"]), "batches": str(t["batches_per_step"]),
           "steps": str(t["steps"]), "repeats": str(t["repeats"]), "lora_layers": str(t["lora_layers"]),
           "peak": f"{t['peak_flop_per_s'] / 1e9:.0f} GFLOP/s", "load": f"{min(loads):.1f} to {max(loads):.1f}"}
    for loss, r in t["losses"].items():
        one = next(k for k in r["speedup_vs_today"] if k.startswith("the step's"))
        out[f"{loss}.one_forward"] = _ratio(r["speedup_vs_today"][one])
    if "peak_flop_per_s_bfloat16" in t:  # the CPU's bfloat16 autocast beside float32
        cast = [r["speedup_vs_today"][k] for r in t["losses"].values() for k in r["speedup_vs_today"]
                if k.startswith("bfloat16 autocast")]
        out["peak_bf16"] = f"{t['peak_flop_per_s_bfloat16'] / 1e9:,.0f} GFLOP/s"
        out["autocast"] = f"{_ratio(min(cast))} to {_ratio(max(cast))}"
    return out


@values
def scratch() -> dict[str, str]:
    """``make figures`` timed from scratch (``bench/figures_scratch.py``) and each chapter opened alone by default
    (``bench/chapters_alone.py``), in the prose: totals, dates, commit, the load beside the batch."""
    b, alone = _bench("figures_scratch"), _bench("chapters_alone")
    total = sum(b["seconds"].values())
    load = b.get("load average during (1 min)")
    longest = max(alone["chapters"].items(), key=lambda kv: kv[1]["seconds"])
    top = max(b["seconds"], key=b["seconds"].get)
    return {"date": b["date"], "commit": b["commit"][:7], "total": _clock(total),
            # against issue 24's 45 minutes: the share used, or how much faster the batch must run to fit
            "fit": (f"fits the 45 minutes a teacher is asked to wait ({total / (45 * 60):.0%} of them)"
                    if total <= 45 * 60 else f"would have to run {_ratio(total / (45 * 60))} as fast to fit in 45 "
                                             f"minutes"),
            "chapters": ", ".join(f"{k} {v:,.0f} s" for k, v in sorted(b["seconds"].items())),
            "longest": f"{top} ({b['seconds'][top] / total:.0%} of the batch)",
            "slowest_cells": _slowest_cells(b),
            "load": f"{load['min']:.1f} to {load['max']:.1f} (median {load['median']:.1f})" if load else "not recorded",
            "alone.date": alone["when"][:10], "alone.longest": f"{longest[0]}, {longest[1]['seconds']:,.0f} s",
            "alone.trained": str(sum(len(v["runs trained"]) for v in alone["chapters"].values()))}


def _slowest_cells(b: dict, n: int = 4) -> str:
    """The batch's ``n`` slowest cells ("08, cell 9: 912 s"), from the executed copies' ``cell seconds``."""
    cells = [(float(s), ch, i) for ch, by in b.get("cell seconds (cells of 5 s or more, by index)", {}).items()
             for i, s in by.items()]
    return "; ".join(f"{ch}, cell {i}: {s:,.0f} s" for s, ch, i in sorted(cells, reverse=True)[:n]) or "not recorded"


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


# ---------------------------------------------------------------------------------- make figures' estimates


def _estimated(profile: str, device: str) -> dict[str, float]:
    """Each chapter's estimated seconds in a batch of all of them (:mod:`.workload`, ``bench/costs.json``)."""
    from ..core.profiles import profile as profile_sizes
    from . import workload

    names = list(workload.CHAPTERS)
    work, costs = workload.batch_workload(names, profile, None, device), workload.load_costs()
    history = profile_sizes(profile)["max_history"]
    return {n: workload.estimate(work[n], costs, device, history)["seconds"] for n in names}


def _measured() -> dict[str, float | None]:
    """Each chapter's seconds in the last quick batch timed from scratch, every run trained
    (``bench/figures_scratch.json``: the estimates assume every run trained)."""
    from . import workload

    scratch = read_json(repo_root() / "bench" / "figures_scratch.json")["seconds"]
    return {n: scratch.get(n[:2]) for n in workload.CHAPTERS}


@table
def figures_estimate() -> str:
    """What ``make figures`` prints before each chapter, for the quick profile on the CPU (beside the canonical
    batch's measured seconds from scratch, ``bench/figures_scratch.json``) and for the paper profile on a GPU (an estimate: the
    cost table's CUDA entry, quoted from issue 25's H200 figures)."""
    quick, paper, seen = _estimated("quick", "cpu"), _estimated("paper", "cuda"), _measured()
    rows, measured_total = [], 0.0
    for name in quick:
        measured = seen[name]
        measured_total += measured or 0.0
        rows.append({"chapter": name[:2], "quick, CPU: estimated": _minutes(quick[name]),
                     "quick, CPU: measured": _minutes(measured) if measured is not None else "–",
                     "paper, one GPU: estimated": _minutes(paper[name])})
    rows.append({"chapter": "all", "quick, CPU: estimated": _minutes(sum(quick.values())),
                 "quick, CPU: measured": _minutes(measured_total),
                 "paper, one GPU: estimated": _minutes(sum(paper.values()))})
    return markdown(rows, "lrrr")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:,.1f} min"


@values
def costs() -> dict[str, str]:
    """Where the cost table's entries come from, and the paper profile's validation choice priced by it."""
    from . import workload

    from ..data import load_dataset
    from .lite_selection import GRID

    table_, choice = workload.load_costs(), workload.validation_choice("paper")
    lite_cpu = table_["cpu"]["units"]["lite_window_block"] * len(load_dataset("toy").train) * (2 + 1)
    grid = workload.estimate(workload.lite_selection("paper", device="cuda"), table_, "cuda")["seconds"]
    load = table_["cpu"].get("load_average") or []
    return {"cpu.when": str(table_["cpu"].get("when", "?"))[:10], "cuda.source": table_["cuda"]["source"],
            "cpu.load": " to ".join(f"{x:.1f}" for x in load) if load else "not recorded",
            "paper.train": _minutes(choice["train"]), "paper.beam": _minutes(choice["beam"]),
            "paper.likelihood": _minutes(choice["likelihood"]), "lite.cpu_epoch_2_blocks": f"{lite_cpu:.0f} s",
            "lite.grid": " × ".join(str(len(v)) for v in GRID.values()),
            "lite.grid_cuda": f"{grid / 3600:.1f} h",
            "quick.over_measured": _ratio(sum(_estimated("quick", "cpu").values())
                                          / sum(x for x in _measured().values() if x is not None))}

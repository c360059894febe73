"""The sentences a chapter writes from its numbers (:mod:`llmrec.experiments.narrative`): the values they quote
and the words that depend on them."""

import pandas as pd
import pytest

from llmrec.experiments import narrative as N


def test_numbers_are_written_for_reading():
    assert N.sig(7.15e-6, 2) == "7.2e−6" and N.sig(53.466) == "53.5" and N.sig(0.5714) == "0.571"
    assert N.sig(760.0) == "760" and N.sig(1103.3) == "1,103" and N.count(11758) == "11,758"
    assert N.share(0.677) == "68%" and N.seconds(0.571) == "0.57 s" and N.seconds(600) == "10 min"
    assert N.megabytes(8795.9) == "8.6 GB" and N.megabytes(0.027) == "0.027 MB"
    assert N.listing(["a"]) == "a" and N.listing(["a", "b", "c"]) == "a, b and c"


@pytest.mark.parametrize("diff, lo, hi, verdict, words", [
    (-2.18, -2.38, -2.0, "resolved", "MSL beats LML: −2.18 [−2.38, −2.00] nats"),
    (1.93, 1.72, 2.15, "resolved", "MSL is worse than LML: +1.93 [+1.72, +2.15] nats"),
    (0.1, -0.2, 0.4, "unresolved", "MSL and LML are not told apart: +0.10 [−0.20, +0.40] nats (unresolved)"),
    (0.1, -0.0001, 0.4, "edge", "(unresolved at the edge)"),
])
def test_a_difference_is_better_or_worse_only_where_its_interval_resolves_it(diff, lo, hi, verdict, words):
    assert words in N.compare("MSL", "LML", {"diff": diff, "lo": lo, "hi": hi, "verdict": verdict}, "nats")


def test_higher_is_better_turns_the_words_around():
    d = {"diff": 0.004, "lo": 0.001, "hi": 0.008, "verdict": "resolved"}
    assert N.compare("A", "B", d, digits=4, lower_is_better=False).startswith("A beats B")


def _costs(build_s):
    c = pd.DataFrame({"toy": {"items": 11758, "build_s": build_s, "paper_build_s": 0.38, "AVT (train targets)": 53.466,
                              "AVT (each item once)": 51.98, "paper_AVT": 54.38, "dense catalogue masks MB": 8795.9,
                              "trie tensors MB": 3.834, "dense batch mask MB (8 windows)": 8.766,
                              "valid lists batch MB (8 windows)": 0.027},
                      "books": {"items": 6344, "build_s": 0.281, "paper_build_s": 0.17, "AVT (train targets)": 96.98,
                                "AVT (each item once)": 92.9, "paper_AVT": 70.9, "dense catalogue masks MB": 4096.9,
                                "trie tensors MB": 2.24, "dense batch mask MB (8 windows)": 5.859,
                                "valid lists batch MB (8 windows)": 0.039}}).T
    return c.rename_axis("dataset")


def test_chapter_01_quotes_its_tables_and_judges_the_paper_by_them():
    summary = pd.DataFrame({"items": [11758, 6344], "train windows": [5000, 30677], "valid windows": [4793, 4383],
                            "test windows": [4794, 4383]}, index=["toy", "books"])
    by_pos = pd.concat({"toy": pd.DataFrame({"mean": [2, 760, 14.9, 12.5], "median": [2, 760, 5, 1]}),
                        "books": pd.DataFrame({"mean": [4, 1103.3, 169.7, 2], "median": [4, 1104, 19, 2]})}, axis=1)
    singletons = pd.Series({"toy": 0.677, "books": 0.746})
    text = N.trie_findings(summary, _costs(0.61), by_pos, singletons)
    for quoted in ("11,758 items", "30,677 training windows", "53.5 (toy)", "54.38 on toy (ours is close to it)",
                   "70.90 on books (ours is larger than it)", "760 (toy) and 1,103 (books)",
                   "median is 1 from position 3 on", "stays above 1 over the first 4 positions", "68% (toy)",
                   "0.61 s (toy)", "claim (well under a second, negligible next to training) holds", "8.6 GB (toy)"):
        assert quoted in text, quoted
    assert "does not hold here" in N.trie_findings(summary, _costs(1.4), by_pos, singletons)


def test_chapter_02_says_reproduced_only_where_the_run_does():
    table = pd.DataFrame({"dense": [4.496322, 3.782357, 0.713972, 4.496329], "fast": [4.49633, 3.782357, 0.713972,
                          4.496329]}, index=["LML (eq. 1)", "L1 (eq. 3)", "L2 (eq. 4)", "L1 + L2"])
    norms = pd.DataFrame({"logged steps": [16, 8], "of steps": [64, 32], "ratio L1/L2": [1.2672, 2.2513]},
                         index=["toy", "books"])
    text = N.decomposition_findings(table, norms, {"optimise LML": 1.0208, "optimise L2 only": 0.8794}, 64)
    for quoted in ("identity holds", "7.0e−6 apart", "LML = 4.50 nats", "84% of LML", "Figure 3 reproduced", "1.27 on toy (16 logged "
                   "steps of 64)", "Figure 4 reproduced", "last 10 of 64 steps: 0.88 when optimising L2 only, 1.02"):
        assert quoted in text, quoted
    norms.loc["books", "ratio L1/L2"] = 0.8
    table.loc["L1 + L2", "dense"] += 0.01
    text = N.decomposition_findings(table, norms, {"optimise LML": 0.8, "optimise L2 only": 0.9}, 64)
    assert "identity fails" in text and "Figure 3 not reproduced" in text and "Figure 4 not reproduced" in text


def test_chapter_03_counts_the_small_weights_of_its_frame():
    frame = pd.DataFrame({"position": [0, 1, 2, 5, 6, 0], "n_valid": [2, 40, 3, 1, 1, 2],
                          "w_lml": [0.9, 0.95, 0.5, 0.99, 0.97, 0.8], "w_msl": [0.01, 0.5, 0.05, 0.0, 0.0, 0.02]})
    from llmrec import probes
    small = probes.small_weight_table(frame, 0.1, 3)
    by_tau = pd.DataFrame({"tau=1.0": {"mean": 0.56, "median": 0.76}, "tau=4.5": {"mean": 0.64, "median": 0.80}})
    text = N.weight_findings(frame, small, by_tau, 0.006, 0.1, 3)
    for quoted in ("single valid token", "(2 of 6)", "3 weights are small and 100% of them are in the first 3",
                   "2 of them are the opening quote", "rises with τ: 0.56 at τ = 1.0, 0.64 at τ = 4.5",
                   "w = 0.006 at τ = 1"):
        assert quoted in text, quoted


def _roots(m, sigma2, delta, disc, code_m, numeric):
    rows = [{"statistics": s, "eta": e, "m": m if s == "paper" else code_m, "sigma2": sigma2, "delta": delta,
             "discriminant": disc if s == "paper" else 40.0, "tau numeric": numeric if e == 0.25 else float("nan")}
            for s in ("paper", "code") for e in (0.1, 0.25, 0.5)]
    return pd.DataFrame(rows)


def test_chapter_04_judges_the_gaussian_fit_and_the_roots_by_its_tables():
    normal = pd.DataFrame({"n": [52113, 77758, 52709, 78213], "skew": [0.041, 0.198, -2.538, -2.055],
                           "excess_kurtosis": [0.111, 0.146, 7.798, 4.544], "ks_distance": [0.009, 0.042, 0.19, 0.2]},
                          index=["toy, standardised per position", "books, standardised per position",
                                 "toy, raw pooled", "books, raw pooled"])
    roots = {"toy": _roots(159.2, 20.8, -1.37, -151.0, 2, 130.9), "books": _roots(376.0, 26.8, 2.19, -238.3, 4, 8.26)}
    roots["books"].loc[2, "discriminant"] = 1.0  # one eta with a real root on books
    tokenwise = pd.DataFrame({"two roots and exact": [25, 26, 2], "median |(+)/exact - 1|": [0.011, 0.04, 0.057],
                              "median |(-)/exact - 1|": [0.85, 0.75, 0.51], "(+) closer": [1.0, 1.0, 0.944]})
    clamped = pd.DataFrame({"toy": {"paper: tau": 5.0, "code: tau": 1.703}, "books": {"paper: tau": 1.5, "code: tau": 1.5}})
    text = N.ats_findings(normal, roots, tokenwise, clamped)
    for quoted in ("are close to Gaussian", "skewness 0.04 (toy) and 0.20 (books)", "they are far from Gaussian",
                   "negative for every η on toy and 2 of 3 η on books", "m ≈ 159 (toy) and 376 (books)",
                   "τ = 5 (toy) and 1.5 (books) at η = 0.25", "exact τ of 131 (toy) and 8.3 (books)",
                   "within 1%–6% of the exact", "closer one at 94%–100%", "the code's root is the right one",
                   "m = 2 (toy) and 4 (books)", "τ = 1.70 (toy) and 1.50 (books)"):
        assert quoted in text, quoted
    paper_only = {n: t[t.statistics == "paper"] for n, t in roots.items()}  # smoke: no first token with a choice
    assert "has no position with more than one valid token" in N.ats_findings(normal, paper_only, tokenwise, clamped)


def test_chapter_05_names_the_run_validation_chose_and_the_verdict_of_each_row():
    sweep = pd.DataFrame([{"dataset": "toy", "tau": t, "split": s, "nll_valid": v, "lo": v - 0.3, "hi": v + 0.3,
                           "users": 500, "beam": 0.0, "beam users": 48 if s == "test" else 24}
                          for t, v in ((1.0, 12.24), (2.0, 13.46), (4.5, 21.34)) for s in ("valid", "test")])
    table6 = pd.DataFrame({"vs LML": [0.0, 0.0, -2.18, 1.93, 0.1], "lo": [0, 0, -2.38, 1.72, -0.2],
                           "hi": [0, 0, -2.0, 2.15, 0.4],
                           "verdict": ["unresolved", "unresolved", "resolved", "resolved", "unresolved"],
                           "test nll_full": [69.6, 69.6, 93.5, 82.9, 70.0], "run": ["a", "a", "b", "c", "d"]},
                          index=["LML", "LML + tuning τ", "MSL (w/o τ)", "MSL (w/ ATS)", "MSL + α"])
    text = N.tau_findings(sweep, table6, 1.0, "toy", 4.5)
    for quoted in ("below 0.062 on 48 test users", "2 of the 3 paired likelihood intervals of Table 6 exclude 0 "
                   "(not: MSL + α)", "12.24 [11.94, 12.54] nats at τ = 1", "validation chooses τ = 1",
                   "optimum (4.5) is not reproduced", "less likely at this scale", "MSL (w/o τ) beats LML: −2.18",
                   "MSL (w/ ATS) is worse than LML: +1.93", "MSL + α and LML are not told apart",
                   "LML + tuning τ is the LML run itself"):
        assert quoted in text, quoted
    assert "reproduced by the likelihood" in N.tau_findings(sweep, table6, 4.5, "toy", 4.5)


def test_chapter_07_reads_the_schedule_and_the_cross_family_verdicts():
    losses = pd.DataFrame({"model": ["sasrec", "sasrec"], "loss": ["ce", "bce"], "ndcg@10": [0.0036, 0.0033],
                           "best_epoch": [4, 11], "seconds_per_epoch": [5.79, 0.56]})
    grid = pd.DataFrame({"K": [10, 500, 500], "alpha": [1.0, 1.0, 100.0], "ndcg@10": [0.0061, 0.0080, 0.0082],
                         "best_epoch": [12, 12, 12], "seconds_per_epoch": [0.69, 2.16, 2.17]})
    cross = pd.DataFrame({"hr@10": [0.0, 0.0208], "n_users": [48, 48]}, index=["LLM + LML", "SASRec + SCE"])
    cross_ci = pd.DataFrame({"method": ["LLM + LML", "LLM + LML"], "metric": ["ndcg@10", "hr@10"],
                             "diff": [-0.0066, -0.02], "lo": [-0.0197, -0.06], "hi": [0.0, 0.0],
                             "verdict": ["unresolved", "unresolved"], "resolved": [False, False]})
    text = N.classic_findings(losses, grid, cross, cross_ci, 12)
    for quoted in ("stops at epoch 4 of at most 12 (NDCG@10 0.0036", "reach 0.0061–0.0082 (best epochs 12)",
                   "5.8 s per epoch against 2.2 s for SCE with K = 500",
                   "0 (LLM + LML) and 1 (SASRec + SCE) users", "LLM + LML and SASRec + CE are not told apart"):
        assert quoted in text, quoted


def test_chapter_08_quotes_the_committed_quick_results():
    from llmrec.core.io import repo_root
    from llmrec.experiments import lite_vs_sasrec, published, tables

    folder = repo_root() / "results" / "quick" / "08_lite"
    evals = published.read_runs(folder, "toy")
    lite = [n for n in evals if n in lite_vs_sasrec.LITE_VARIANTS]
    main = ["Lite-LLM4Rec", "SASRec + CE", "SASRec + SCE (K 500, α 100)", "popularity"]
    text = N.lite_findings(tables.accuracy_table(evals),
                           tables.paired_table({k: evals[k] for k in main}, "SASRec + CE", ("ndcg@10", "hr@10")),
                           tables.paired_table({k: evals[k] for k in lite}, "Lite-LLM4Rec", ("ndcg@10", "hr@10")),
                           published.read_table(folder, "toy", "beam-users"),
                           published.read_table(folder, "toy", "beam-users-paired"),
                           published.read_table(folder, "toy", "inference-cost"))
    for quoted in ("over 4,794 test windows", "the paper's claim (97.28% less) holds", "Lite-LLM4Rec beats SASRec + CE",
                   "every paired NDCG@10 interval against Lite-LLM4Rec contains 0",
                   "no item LLM (item-id embeddings) is worse than Lite-LLM4Rec"):
        assert quoted in text, quoted

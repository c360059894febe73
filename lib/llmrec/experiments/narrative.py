"""The sentences of a chapter's text that quote a run: written by code from what the chapter computed, so that the
prose says what the cells above print and cannot drift from it (a chapter's narrative cell shows
``narrative.show(...)``). Words that state a conclusion follow the numbers: a paired difference is "better" or
"worse" only where its interval resolves it (:func:`.words.compare`), and a claim of a paper "holds" only where the
run says so."""

from __future__ import annotations

from .doc_format import direction, interval, num
from .words import (_isnan, bullets, compare, count, holds, listing, megabytes, possessive, relation, seconds, share,
                    show, sig)


# ------------------------------------------------------------------------------ chapter 01: the data and the trie


def each(values: dict, fmt=sig, unit: str = "") -> str:
    """One value per dataset (or run), each followed by its name: "0.61 s (toy) and 0.28 s (books)"."""
    unit = f" {unit}" if unit else ""
    return listing(f"{fmt(v)}{unit} ({n})" for n, v in values.items())


def trie_findings(summary, costs, by_pos, singletons) -> str:
    """Chapter 01's findings: the datasets (``summary``: one row per dataset, from ``Dataset.summary``, in the
    order of ``costs``: a folder's summary names the dataset, its costs the folder), AVT, build time and memory
    (``costs``: :func:`llmrec.probes.trie_costs` by dataset), the valid-set sizes of the first positions
    (``by_pos``: (dataset, count/mean/median/max) columns by position) and the share of tokens with a single
    valid continuation (``singletons``, by dataset)."""
    names = list(costs.index)
    if len(summary) != len(names):
        raise ValueError(f"{len(summary)} dataset summaries for {len(names)} datasets' costs")
    summary = summary.set_axis(names, axis=0)

    def col(name):
        return {n: costs.loc[n, name] for n in names}

    data = "; ".join(f"{n} has {count(summary.loc[n, 'items'])} items and {count(summary.loc[n, 'train windows'])} "
                   f"training windows ({count(summary.loc[n, 'valid windows'])} validation, "
                   f"{count(summary.loc[n, 'test windows'])} test)" for n in names)
    ours, paper = col("AVT (train targets)"), {n: v for n, v in col("paper_AVT").items() if not _isnan(v)}
    avt = f"Over the training targets there are {each(ours)} valid tokens per response token"
    if paper:
        avt += "; the paper's Table 4 gives " + listing(
            f"{v:.2f} on {n} (ours is {relation(ours[n], v)} it)" for n, v in paper.items())
    avt += f". Counting each catalogue item once instead gives {each(col('AVT (each item once)'))}."
    first_one = {n: next((int(p) for p, m in by_pos[n]["median"].items() if m == 1), None) for n in names}
    medians = listing(f"on {n} the median is 1 from position {p} on" if p is not None else
                      f"on {n} the median stays above 1 over the first {len(by_pos)} positions"
                      for n, p in first_one.items())
    shape = (f"After the opening quote ({each({n: by_pos[n]['mean'].iloc[0] for n in names})} valid tokens) the "
             f"first word has {each({n: by_pos[n]['mean'].iloc[1] for n in names})}; {medians}. "
             f"{each(dict(singletons.items()), share)} of all response tokens have exactly one valid continuation.")
    build = (f"Tokenising all titles and building the trie took a median {each(col('build_s'), seconds)} on this "
             "machine")
    table7 = {n: v for n, v in col("paper_build_s").items() if not _isnan(v)}
    if table7:
        build += f", against {each(table7, seconds)} in Table 7"
    fast = all(s < 1 for s in col("build_s").values())
    build += f": {holds('well under a second, negligible next to training', fast)}."
    batch = next(k for k in costs.columns if k.startswith("dense batch mask MB"))
    lists = next(k for k in costs.columns if k.startswith("valid lists batch MB"))
    memory = (f"Dense boolean masks for every catalogue response would take "
              f"{each(col('dense catalogue masks MB'), megabytes)}; the trie's tensors take "
              f"{each(col('trie tensors MB'), megabytes)}. For one batch of {batch.split('(')[1].rstrip(')')} the "
              f"dense mask takes {each(col(batch), megabytes)}, the valid-token lists {each(col(lists), megabytes)}.")
    return bullets(f"**The data.** {data}.", f"**AVT.** {avt}",
                   f"**Where the valid sets are large.** {shape}", f"**Build time.** {build}", f"**Memory.** {memory}")


# ------------------------------------------------------------------------------ chapter 02: LML = L1 + L2


def decomposition_findings(table, grad_norms, l2_tail: dict, steps: int, tail: int = 10) -> str:
    """Chapter 02's findings: the identity on one batch (``table``: :func:`llmrec.probes.decomposition_table`),
    Figure 3 (``grad_norms``: :func:`llmrec.probes.grad_norm_summary`) and Figure 4 (``l2_tail``: the mean L2 of
    the last ``tail`` of ``steps`` training steps when optimising LML and when optimising L2 only)."""
    lml, l1 = table.loc["LML (eq. 1)", "dense"], table.loc["L1 (eq. 3)", "dense"]
    gap = abs(table.loc["L1 + L2", "dense"] - lml)
    fast = float((table["dense"] - table["fast"]).abs().max())
    exact = max(gap, fast) <= 1e-4 * max(1.0, abs(lml))  # float32 rounding over a batch
    identity = (f"**The identity {'holds' if exact else 'fails'} on a real batch**: L1 + L2 and LML are {sig(gap, 2)} apart in float32 "
                f"(LML = {num(lml, 2)} nats per response token), and the fast path (valid tokens only) is within "
                f"{sig(fast, 2)} of the dense teaching version. Before fine-tuning {share(l1 / lml)} of LML is "
                f"$\\mathcal L^1$" + (": the untuned model puts most of its mass on tokens that continue no title."
                                      if l1 > lml / 2 else "."))
    ratio = grad_norms["ratio L1/L2"]
    larger = (ratio > 1).all()
    runs = listing(f"{num(r['ratio L1/L2'], 2)} on {n} ({count(r['logged steps'])} logged steps of "
                   f"{count(r['of steps'])})" for n, r in grad_norms.iterrows())
    figure3 = (f"**Figure 3{' reproduced' if larger else ' not reproduced'}.** The paper reports that "
               f"$\\|\\nabla \\mathcal L^1\\|$ overwhelms $\\|\\nabla \\mathcal L^2\\|$. Our median ratio L1/L2 is "
               f"{runs}: " + ("L1's gradient is the larger on every dataset; compare the size of the ratio with "
                              "the paper's figure." if larger else "L1's gradient is not the larger everywhere."))
    lml_l2, alone = l2_tail["optimise LML"], l2_tail["optimise L2 only"]
    figure4 = (f"**Figure 4{' reproduced' if alone < lml_l2 else ' not reproduced'}.** The paper shows "
               f"$\\mathcal L^2$ falling faster and lower when it is optimised alone. Mean $\\mathcal L^2$ over the "
               f"last {min(tail, steps)} of {steps} steps: {num(alone, 2)} when optimising L2 only, {num(lml_l2, 2)} when "
               "optimising LML.")
    return bullets(identity, figure3, figure4)


# ------------------------------------------------------------------------------ chapter 03: gradient weights


def weight_findings(frame, small, by_tau, picked_w: float, threshold: float, first: int) -> str:
    """Chapter 03's findings: ``frame`` (:func:`llmrec.probes.weight_frame`), ``small``
    (:func:`llmrec.probes.small_weight_table` at ``threshold`` and ``first``), ``by_tau`` (mean and median MSL
    weight over the tokens with |Z_valid| > 1, one column ``tau=<τ>`` per temperature) and ``picked_w`` (the
    slider's position's MSL weight at τ = 1)."""
    single = frame[frame.n_valid == 1]
    row = small.set_index(["weights", "tokens"])
    share_col, base_col = f"share of small w in first {first}", f"share of all tokens in first {first}"
    multi = row.loc[("MSL", "|Z_valid| > 1")]
    small_multi = frame.query("n_valid > 1 and w_msl < @threshold")
    at_quote = int((small_multi.position == 0).sum())
    figure5 = (f"**Figure 5.** LML's weights stay high (mean {num(row.loc[('LML', 'all tokens'), 'mean w'], 2)}; "
               f"median {num(single.w_lml.median(), 2)} at the {count(len(single))} positions with a single valid "
               f"token). MSL's are lower (mean {num(row.loc[('MSL', 'all tokens'), 'mean w'], 2)} over all "
               f"{count(len(frame))} tokens), and every token with $|\\mathcal Z_{{valid}}| = 1$ "
               f"({count(len(single))} of {count(len(frame))}) has P_valid = 1 and weight exactly 0.")
    concentrated = multi[share_col] > multi[base_col]
    statistic = (f"**The paper's 61% statistic.** Over all tokens {share(row.loc[('MSL', 'all tokens'), share_col])} "
                 f"of the small MSL weights (w < {threshold:g}) are in the first {first} tokens. Restricted to tokens "
                 f"with $|\\mathcal Z_{{valid}}| > 1$, {count(multi[f'w < {threshold:g}'])} weights are small and "
                 f"{share(multi[share_col])} of them are in the first {first} tokens, against a base rate of "
                 f"{share(multi[base_col])} of such tokens there: small weights are "
                 f"{'more' if concentrated else 'not more'} concentrated at the start than the tokens themselves. "
                 f"{count(at_quote)} of them are the opening quote (position 0).")
    taus = [float(c.split("=")[1]) for c in by_tau.columns]
    lo, hi = by_tau.columns[taus.index(1.0)] if 1.0 in taus else by_tau.columns[0], by_tau.columns[-1]
    rises = by_tau.loc["mean", hi] > by_tau.loc["mean", lo]
    temperature = (f"**Temperature.** The slider's position has w = {num(picked_w, 3)} at τ = 1. Over the batch "
                   f"(positions with $|\\mathcal Z_{{valid}}| > 1$) the mean MSL weight "
                   f"{'rises' if rises else 'does not rise'} with τ: {num(by_tau.loc['mean', lo], 2)} at "
                   f"{lo.replace('tau=', 'τ = ')}, {num(by_tau.loc['mean', hi], 2)} at {hi.replace('tau=', 'τ = ')} "
                   f"(median {num(by_tau.loc['median', lo], 2)} and {num(by_tau.loc['median', hi], 2)}).")
    return bullets(figure5, statistic, temperature)


# ------------------------------------------------------------------------------ chapter 06: the losses compared


def _pair(paired, method: str, metric: str) -> dict:
    return paired[(paired["method"] == method) & (paired["metric"] == metric)].iloc[0].to_dict()


def comparison_findings(nll: dict, paired, evals: dict, ats: dict, bx, baseline: str = "LML") -> str:
    """Chapter 06's findings: the likelihood of each method (``nll``: {name: (run, evaluation)}) and its paired
    difference to ``baseline`` (``paired``: :func:`.tables.paired_table` rows of ``nll_valid`` and beam metrics),
    the beam hits (``evals``), how ATS set τ (``ats``: the summary of :func:`llmrec.probes.ats_trace`), and beam
    search against exact ranking (``bx``: :func:`.llm_losses.beam_vs_exact`)."""
    from .tables import results_table

    table = results_table(nll)
    names = [n for n in table.index if n != baseline]
    order = table["nll_valid"].sort_values().index
    likelihood = (f"**Accuracy, by the likelihood** (−log P_valid of the target, nats, lower is better). In order: "
                  + listing(f"{n} {num(table.loc[n, 'nll_valid'], 2)}" for n in order) + ". Against "
                  f"{baseline} on the same {count(table.loc[baseline, 'n_users'])} users: "
                  + "; ".join(compare(n, baseline, _pair(paired, n, "nll_valid"), "nats") for n in names) + ".")
    beam_users = {n: ev["n_users"] for n, (_, ev) in evals.items()}
    hits = {n: round(ev["summary"]["hr@10"] * ev["n_users"]) for n, (_, ev) in evals.items()}
    beam = (f"Beam search finds {each(hits, count)} of the {count(max(beam_users.values()))} test targets in its "
            "top 10; " + ("every paired NDCG@10 interval contains 0, so the figure states that NDCG@10 is unresolved"
                           if all(_pair(paired, n, "ndcg@10")["verdict"] != "resolved" for n in names)
                           else "see the paired table for which NDCG@10 differences are resolved") + ".")
    no_root, steps = ats["steps without a root"], ats["steps"]
    taus = {int(k.rsplit(" ", 1)[1]): v for k, v in ats.items() if k.startswith("tau at step ")}
    trace = (f"**How ATS set τ.** Eq. (12) has no positive root at {count(no_root)} of the {count(steps)} steps "
             f"({'all' if ats['of which Delta <= 0'] == no_root else count(ats['of which Delta <= 0'])} of them with "
             f"Δ ≤ 0); roots below the lower clamp: {count(ats['roots below the lower clamp'])} "
             f"({ats['clamp'][0]:g}; median root {num(ats['median raw root'], 2)}). The smoothed τ: "
             + listing(f"{num(t, 2)} at step {s}" for s, t in sorted(taus.items())) + ".")
    cost = table["s/step"]
    fastest = cost.idxmin()
    costs = (f"**Cost** per training step on identical batches: {each(cost.to_dict(), lambda s: seconds(s))}; "
             f"{fastest} is the fastest, " + listing(f"{n} {num(cost[n] / cost[fastest], 1)}×" for n in cost.index
                                                    if n != fastest) + " its time.")
    ranks = bx["exact rank"]
    missed = int((bx["beam rank"] >= 10).sum())
    exact = (f"**Ranking.** Beam search missed {count(missed)} of the {count(len(bx))} users of the exact comparison; "
             f"their exact ranks run from {count(ranks.min())} to {count(ranks.max())}. The exact pass costs "
             f"{num(bx['exact s/user'].iloc[0] / bx['beam s/user'].iloc[0], 1)}× a beam search per user "
             f"({seconds(bx['exact s/user'].iloc[0])} against {seconds(bx['beam s/user'].iloc[0])}) and gives every "
             "user a rank.")
    return bullets(likelihood + " " + beam, trace, costs, exact)


def laptop_comparison_findings(profile: str = "laptop") -> str:
    """Chapter 06 under the committed ``laptop`` runs (``results/laptop/llm``): the likelihood and beam NDCG@10 of
    LML, S-DPO and MSL + ATS, and each against LML on the same test users."""
    from .doc_format import CHOOSE_BY, _compare, _evaluation, _llm_run

    runs = {"LML": _llm_run("lml", profile=profile), "S-DPO": _llm_run("sdpo", profile=profile),
            "MSL + ATS": _llm_run("msl-ats", profile=profile)}
    nll = {n: _evaluation(r, "test", "likelihood") for n, r in runs.items()}
    beam = {n: _evaluation(r, "test", "beam") for n, r in runs.items()}
    lml = runs["LML"]
    likelihood = "; ".join(compare(n, "LML", _compare(lml, r, "likelihood", CHOOSE_BY), "nats")
                           for n, r in runs.items() if n != "LML")
    ndcg = "; ".join(compare(n, "LML", _compare(lml, r, "beam", "ndcg@10"), digits=4, lower_is_better=False)
                     for n, r in runs.items() if n != "LML")
    return bullets(
        f"−log P_valid on {count(nll['LML']['n_users'])} test users: "
        + listing(f"{n} {num(e['summary'][CHOOSE_BY], 2)}" for n, e in nll.items()) + f". {likelihood}.",
        f"Beam NDCG@10 on {count(beam['LML']['n_users'])} users: "
        + listing(f"{n} {num(e['summary']['ndcg@10'])}" for n, e in beam.items()) + f". {ndcg}.")


def beam_scoring_findings(runs=None) -> str:
    """Chapters 05 and 06 under the committed ``laptop`` runs: how beams should be scored (full-vocabulary
    log-softmax or log P_valid), chosen on validation over every run scored both ways, then the same comparison
    on test, per run and pooled, beside the MSL authors' own figures (:mod:`.beam_scoring`). ``runs``: only the
    runs whose label starts with one of these names (None: every run)."""
    from . import beam_scoring as B

    c = B.choice()
    v = c["pooled"]
    table = B.scoring_table("test")
    if runs is not None:
        keep = table["run"].str.startswith(tuple(runs))
        table = table[keep | table["run"].str.startswith("pooled")]
    each_run = "; ".join(f"{r['run']} {num(r['ndcg@10 full'])} → {num(r['ndcg@10 P_valid'])}"
                         for r in table.to_dict("records") if not r["run"].startswith("pooled"))
    pool = table[table["run"].str.startswith("pooled")]
    pooled = ""
    if not pool.empty and runs is None:
        r = pool.iloc[0]
        d = {m: B.row_result(r, m) for m in B.METRICS}
        pooled = (f" Pooled over the {len(table) - 1} runs: NDCG@10 {interval(d['ndcg@10'])}, HR@10 "
                  f"{interval(d['hr@10'], 3)}.")
    resolved = [r["run"] for r in table.to_dict("records") if r["ndcg@10 verdict"] == "resolved"]
    if c["choice"] == "valid":
        chosen = "P_valid is ahead on validation, and becomes the default beam score"
    elif v["verdict"] == "resolved":
        chosen = "the full softmax is ahead on validation, and stays the default beam score"
    else:
        chosen = "validation does not tell them apart, so the default stays the full softmax"
    books = ""
    if runs is None and B.scored_both_ways("valid", "books"):
        cb, tb = B.choice(dataset="books"), B.pooled(B.scored_both_ways("test", "books"))
        books = (f"**On Books** ({count(len(cb['runs']))} reference runs scored both ways): on validation P_valid − full "
                 f"on NDCG@10 is {interval(cb['pooled'])} (hits on {count(cb['users'])} users: {cb['hits']['full']} with the "
                 f"full softmax, {cb['hits']['valid']} with P_valid), so the same rule "
                 + ("would choose P_valid there" if cb["choice"] == "valid" else "keeps the full softmax there too")
                 + f"; pooled on test, {interval(tb)}.")
    return bullets(
        f"**Chosen on validation.** {count(len(c['runs']))} committed runs, {listing(c['runs'])}, have their "
        f"validation beams scored both ways on the same {count(c['users'])} users: {c['hits']['full']} hits in all with "
        f"the full softmax, {c['hits']['valid']} with P_valid; pooled, P_valid − full on NDCG@10 is "
        f"{interval(v)}: {chosen}.",
        f"**On test** (NDCG@10, full → P_valid, the same {count(int(table['users'].iloc[0]))} users): {each_run}."
        f"{pooled} {'No run resolves' if not resolved else 'Resolved for ' + listing(resolved) + '; no other run resolves'}"
        f" a difference. The MSL authors, with 10-epoch models on Toy, report {B.PAPER_TOY['full']} (the paper, full "
        f"softmax) and {B.PAPER_TOY['valid']} (their README, beams over the valid tokens) for BIGRec + MSL.",
        books)


# ------------------------------------------------------------------------------ chapter 04: Gaussian logits, ATS


def _span(values, fmt=sig) -> str:
    """"0.011" or "0.011-0.057": the range of ``values`` (one value when they agree to the digits shown)."""
    values = list(values)
    if not values:
        return "–"
    lo, hi = fmt(min(values)), fmt(max(values))
    return lo if lo == hi else f"{lo}–{hi}"


def _at(rows, eta: float):
    """The row of ``rows`` whose ``eta`` is nearest ``eta`` (None: no rows)."""
    if rows.empty:
        return None
    return rows.loc[(rows["eta"] - eta).abs().idxmin()]


def ats_findings(normal, roots: dict, tokenwise, clamped, eta: float = 0.25) -> str:
    """Chapter 04's findings: ``normal`` (:func:`llmrec.probes.normality` rows "<dataset>, standardised per
    position" and "<dataset>, raw pooled"), ``roots`` ({dataset: :func:`llmrec.probes.ats_root_table`}),
    ``tokenwise`` (:func:`llmrec.probes.ats_tokenwise_summary` by dataset) and ``clamped`` (τ of
    :func:`llmrec.core.losses.ats_temperature` at ``eta``, rows "paper: tau" and "code: tau", one column per
    dataset)."""
    names = list(roots)
    std = {n: normal.loc[f"{n}, standardised per position"] for n in names}
    raw = {n: normal.loc[f"{n}, raw pooled"] for n in names}
    close = all(abs(r["skew"]) < 0.5 and abs(r["excess_kurtosis"]) < 1 and r["ks_distance"] < 0.05 for r in std.values())
    far = any(abs(r["skew"]) > 1 or abs(r["excess_kurtosis"]) > 2 for r in raw.values())
    gauss = (f"**Gaussian logits (Figure 8).** Standardised per position the valid-token logits are "
             f"{'close to Gaussian' if close else 'not close to Gaussian'}: skewness "
             f"{each({n: r['skew'] for n, r in std.items()}, lambda x: num(x, 2))}, excess kurtosis "
             f"{each({n: r['excess_kurtosis'] for n, r in std.items()}, lambda x: num(x, 2))}, KS distance "
             f"{each({n: r['ks_distance'] for n, r in std.items()}, lambda x: num(x, 3))} (0 for a perfect fit; with "
             f"{_span([r['n'] for r in std.values()], count)} logits a test would reject any deviation, so judge the "
             f"size). Pooled without standardising, as eq. (12)'s single μ and σ² do, they are "
             f"{'far from Gaussian' if far else 'close to it too'}: skewness "
             f"{each({n: r['skew'] for n, r in raw.items()}, lambda x: num(x, 1))}, excess kurtosis "
             f"{each({n: r['excess_kurtosis'] for n, r in raw.items()}, lambda x: num(x, 1))}.")
    paper = {n: t[t.statistics == "paper"] for n, t in roots.items()}
    negative = {n: int((p.discriminant < 0).sum()) for n, p in paper.items()}
    at = {n: _at(p, eta) for n, p in paper.items()}
    shown = float(next(iter(at.values()))["eta"])  # ``eta``, or the nearest η the table has
    pooled = (f"**Eq. (12) with the paper's pooled statistics.** The discriminant Δ² − 2Cσ² is negative for "
              + listing(f"{'every' if k == len(paper[n]) else 'no' if k == 0 else f'{k} of {len(paper[n])}'} η on {n}"
                        for n, k in negative.items())
              + f": m ≈ {each({n: a['m'] for n, a in at.items()}, lambda x: sig(x, 3))} valid tokens on average, "
              f"σ² ≈ {each({n: a['sigma2'] for n, a in at.items()}, lambda x: sig(x, 2))}, Δ = "
              f"{each({n: a['delta'] for n, a in at.items()}, lambda x: sig(x, 2))}. After the code's clamp to "
              f"[1.5, 5] ATS uses τ = {each(clamped.loc['paper: tau'].to_dict(), lambda x: sig(x, 2))} at η = "
              f"{eta:g}, against the exact τ of {each({n: a['tau numeric'] for n, a in at.items()}, lambda x: sig(x, 2))}"
              + (f" at η = {shown:g}." if shown != eta else "."))
    closer = tokenwise["(+) closer"].dropna()
    plus = tokenwise["median |(+)/exact - 1|"].dropna()
    minus = tokenwise["median |(-)/exact - 1|"].dropna()
    n_pos = tokenwise["two roots and exact"]
    root = (f"**Which root, position by position.** Where eq. (11) has two real roots and the exact τ_t exists "
            f"({_span(n_pos, count)} positions per dataset and η), the \"+\" root (the authors' code) lies within "
            f"{_span(plus, share)} of the exact τ_t (median) and the \"−\" root printed in the paper "
            f"{_span(minus, share)} off; the \"+\" root is the closer one at {_span(closer, share)} of those "
            f"positions" + (": the code's root is the right one." if len(closer) and closer.min() > 0.5 else "."))
    code = {n: _at(t[t.statistics == "code"], eta) for n, t in roots.items()}
    code = {n: c for n, c in code.items() if c is not None}
    variants = ("**Paper vs code statistics.** " + (
        f"The code's variant (first response token only) estimates everything from the opening quote: m = "
        f"{each({n: c['m'] for n, c in code.items()}, lambda x: sig(x, 3))}. At η = {eta:g} it gives τ = "
        f"{each(clamped.loc['code: tau'].to_dict(), lambda x: sig(x, 3))} after the clamp, the paper's statistics "
        f"{each(clamped.loc['paper: tau'].to_dict(), lambda x: sig(x, 3))}." if code else
        "The code's variant (first response token only) has no position with more than one valid token here."))
    return bullets(gauss, pooled, root, variants)


# ------------------------------------------------------------------------------ chapter 05: the τ sweep, Table 6


def tau_findings(sweep, table6, chosen_tau: float, dataset: str, paper_tau: float | None = None,
                 baseline: str = "LML") -> str:
    """Chapter 05's findings: the sweep (:func:`.llm_losses.sweep_frame` rows of ``dataset``), the τ validation
    chose, the paper's best τ on that dataset (None: not published), and Table 6
    (:func:`.llm_losses.ablation_frame`, its rows against ``baseline``)."""
    rows = sweep[sweep["dataset"] == dataset]
    test = rows[rows["split"] == "test"].sort_values("tau")
    hits = float(rows["beam"].max())
    users = int(test["beam users"].min())
    beam = ("**Beam search.** " + (f"Beam NDCG is 0 for every run on both splits, so each value is only bounded: "
                                   f"below {sig(3 / users, 2)} on {count(users)} test users (95%, rule of three). "
                                   "The likelihood resolves what beam search cannot."
                                   if hits == 0 else "Beam search finds some targets; its intervals are in the "
                                   "sweep's table."))
    same = [m for m in table6.index if m != baseline and table6.loc[m, "run"] == table6.loc[baseline, "run"]]
    others = table6.drop(index=[baseline, *same])
    resolved = [m for m, r in others.iterrows() if r["verdict"] == "resolved"]
    beam += (f" On {count(test['users'].iloc[0])} users {count(len(resolved))} of the {count(len(others))} paired "
             "likelihood intervals of Table 6 exclude 0" + (f" (not: {listing(m for m in others.index if m not in resolved)})"
                                                             if len(resolved) < len(others) else "") + ".")
    trend = test["nll_valid"].is_monotonic_increasing
    agree = paper_tau is not None and float(chosen_tau) == float(paper_tau)
    sweep_text = (f"**The τ sweep.** Test −log P_valid: " + listing(
        f"{num(r['nll_valid'], 2)} [{num(r['lo'], 2)}, {num(r['hi'], 2)}] nats at τ = {r['tau']:g}"
        for _, r in test.iterrows()) + f"; validation chooses τ = {float(chosen_tau):g}"
        + (f", the paper's optimum ({paper_tau:g}) is {'reproduced' if agree else 'not reproduced'} by the likelihood"
           if paper_tau is not None else "")
        + (". A larger fixed τ makes the target less likely at this scale." if trend and len(test) > 1 else "."))
    compared = "; ".join(compare(m, baseline, {"diff": r[f"vs {baseline}"], "lo": r["lo"], "hi": r["hi"],
                                              "verdict": r["verdict"]}, "nats") for m, r in others.iterrows())
    compared += "".join(f"; {m} is the {baseline} run itself (validation chose it)" for m in same)
    table = f"**Table 6 against {baseline}** (test −log P_valid, paired on the same users): {compared}."
    full = table6["test nll_full"].drop(index=same)
    calib = (f"The full-vocabulary −log P of the target: {baseline} {num(full[baseline], 1)}, "
             + listing(f"{m} {num(v, 1)}" for m, v in full.drop(index=baseline).items())
             + (": MSL gives up what it does not train, the probability of leaving the catalogue."
                if (full.drop(index=baseline) > full[baseline]).all() else "."))
    return bullets(beam, sweep_text, table + " " + calib)


def laptop_tau_findings(profile: str = "laptop") -> str:
    """Chapter 05 under the committed ``laptop`` runs: Table 6 against LML on the likelihood and on beam NDCG@10,
    and the sweep's first and last τ against each other on both."""
    from .doc_format import CHOOSE_BY, _compare, _evaluation, _msl_sweep, _table6_runs

    rows = _table6_runs(profile)
    lml = rows.pop("LML")
    n = _evaluation(lml, "test", "likelihood")["n_users"]
    beam_users = _evaluation(lml, "test", "beam")["n_users"]
    same = [m for m, r in rows.items() if r.name == lml.name]  # validation chose LML itself
    rows = {m: r for m, r in rows.items() if m not in same}
    likelihood = "; ".join(compare(m, "LML", _compare(lml, r, "likelihood", CHOOSE_BY), "nats") for m, r in rows.items())
    likelihood += "".join(f"; {m} is the LML run itself" for m in same)
    beam = [(m, _compare(lml, r, "beam", "ndcg@10")) for m, r in rows.items()]
    beam_text = "; ".join(compare(m, "LML", d, digits=4, lower_is_better=False) for m, d in beam)
    sweep = _msl_sweep(profile)
    first, last = list(sweep)[0], list(sweep)[-1]
    ndcg = {t: _evaluation(r, "test", "beam")["summary"]["ndcg@10"] for t, r in sweep.items()}
    tau_beam = _compare(sweep[first], sweep[last], "beam", "ndcg@10")
    tau_nll = _compare(sweep[first], sweep[last], "likelihood", CHOOSE_BY)
    return bullets(
        f"Test −log P_valid on {count(n)} users, against LML: {likelihood}.",
        f"Beam NDCG@10 on {count(beam_users)} users, against LML: {beam_text}.",
        f"Beam NDCG@10 by training temperature: " + listing(f"{num(v)} at τ = {t:g}" for t, v in ndcg.items())
        + f". τ = {last:g} against τ = {first:g}: NDCG@10 {interval(tau_beam)}, −log P_valid "
        f"{interval(tau_nll, 2)} nats" + _disagree(tau_nll, tau_beam))


def _disagree(nll: dict, beam: dict) -> str:
    """Whether the likelihood (lower is better) and a beam metric (higher is better) point the same way."""
    if direction(nll) == 0 or beam["diff"] == 0 or (nll["diff"] > 0) != (beam["diff"] > 0):
        return "."
    return (": **the likelihood and beam search disagree about τ**." if direction(beam) != 0 else
            ": beam search points the other way from the likelihood, without resolving it.")



def evaluation_sizes(profile: str) -> str:
    """How many users a profile evaluates, and with how many beams (from :mod:`llmrec.core.profiles`)."""
    from ..core.profiles import profile as sizes

    p = sizes(profile)
    return (f"Under `{profile}`: the likelihood on {count(p['likelihood_users'])} users of each split; beam search "
            f"with {count(p['eval_beams'])} beams on {count(p['eval_users'])} test users (NDCG@10), and with "
            f"{count(p['valid_beams'])} beams on {count(p['valid_users'])} validation users.")


# ------------------------------------------------------------------------------ chapter 07: the classic family


def _higher(name: str, base: str, r) -> str:
    """A row with diff, lo, hi and a verdict (or ``resolved``) of a metric where higher is better, in words."""
    return compare(name, base, {"diff": r["diff"], "lo": r["lo"], "hi": r["hi"], "verdict": _verdict(r)}, digits=4,
                   lower_is_better=False)


def _verdict(r) -> str:
    """A row's verdict: its ``verdict`` column, or from ``resolved`` where a table has only that."""
    if "verdict" in r.index and isinstance(r["verdict"], str):
        return r["verdict"]
    return "resolved" if bool(r["resolved"]) else "unresolved"


def classic_findings(losses, grid, cross, cross_ci, epochs_cap: int, baseline: str = "SASRec + CE") -> str:
    """Chapter 07's findings under the chapter's profile: the quick schedule's SASRec + CE against the SCE grid
    (``losses``: :func:`.classic_losses.compare_losses`, ``grid``: :func:`.classic_losses.sce_grid`, runs capped at
    ``epochs_cap`` epochs) and the cross-family comparison on the LLM runs' users (``cross``, ``cross_ci``:
    :func:`.sasrec_vs_llm.cross_family_table`)."""
    ce = losses.query("model == 'sasrec' and loss == 'ce'").iloc[0]
    k500 = grid[grid["K"] == grid["K"].max()]
    schedule = (f"**The profile's schedule.** SASRec + CE stops at epoch {count(ce['best_epoch'])} of at most "
                f"{count(epochs_cap)} (NDCG@10 {num(ce['ndcg@10'])} on all test windows) while the SCE grid's cells "
                f"reach {_span(grid['ndcg@10'], num)}"
                + (f" (best epochs {_span(grid['best_epoch'], count)})" if "best_epoch" in grid else "")
                + f". Full CE costs {seconds(ce['seconds_per_epoch'])} per epoch against "
                f"{seconds(k500['seconds_per_epoch'].mean())} for SCE with K = {count(grid['K'].max())}.")
    hits = {m: round(r["hr@10"] * r["n_users"]) for m, r in cross.iterrows()}
    ndcg = cross_ci[cross_ci["metric"] == "ndcg@10"]
    versus = "; ".join(_higher(r["method"], baseline, r) for _, r in ndcg.iterrows())
    family = (f"**Against the LLM** (on the {count(cross['n_users'].max())} users the LLM runs can afford beam "
              f"search on; SASRec + CE and + SCE trained to their plateau): the top 10 holds the target for "
              f"{each(hits, count)} users. NDCG@10 against {baseline}: {versus}.")
    return bullets(schedule, family)


def protocol_findings(protocol, books=None, baseline: str = "SASRec + CE",
                      losses=("SASRec + BCE", "SASRec + BPR", "SASRec + sampled softmax (K 500)",
                              "SASRec + SCE (K 500, α 100)")) -> str:
    """Chapter 07 under one protocol (the committed ``laptop`` grid, :func:`.classic_protocol.protocol_table` on
    Toy and, where committed, ``books``): each of the SCE paper's losses and each departure from the reference
    code against ``baseline``."""
    def table(t, name):
        base = t.loc[baseline]
        rows = "; ".join(_higher(m, baseline, t.loc[m]) for m in losses if m in t.index)
        return (f"On {name}: {baseline} reaches NDCG@10 {num(base['ndcg@10'])} (best epochs {base['best epochs']}, "
                f"{seconds(base['s/run'])} per run); {rows}. SCE takes {seconds(t.loc[losses[-1], 's/run'])} per run."
                if losses[-1] in t.index else "")
    departures = [m for m in protocol.index if m != baseline and m not in losses and m != CHOSEN]
    moved = [m for m in departures if _verdict(protocol.loc[m]) == "resolved"]
    changes = (f"Of the {count(len(departures))} departures from the reference SASRec code, {count(len(moved))} move "
               "NDCG@10 beyond the interval's reach of 0" + (": " + "; ".join(_higher(m, baseline, protocol.loc[m])
                                                                      for m in moved) if moved else "")
               + ". The others are unresolved.")
    return bullets(table(protocol, "Toy"), table(books, "Books") if books is not None else "", changes)


CHOSEN = "CE, chosen default (the three combined)"  # classic_protocol.CHOSEN_DEFAULT (a test checks they agree)


def default_findings(selection, tests: dict, path=None, elsewhere: dict | None = None, baseline: str = "SASRec + CE",
                     today: str = "today's default") -> str:
    """Chapter 07: SASRec's default chosen on validation (``selection``:
    :func:`.sasrec_default.default_selection`) and what the chosen one does on test under the protocol
    (``tests``: {"Toy": {"NDCG@10": table, "HR@10": table}, ...}, each :func:`.classic_protocol.protocol_table`
    with the chosen variant :data:`CHOSEN` paired against ``baseline``); ``path``: the forward selection's
    candidates (:func:`.sasrec_default.forward_path`); ``elsewhere``: {"Books": the same selection on another
    dataset's validation, the chosen candidate beside today's}."""
    pick = selection.index[selection["chosen"]][0]
    row, base = selection.loc[pick], selection.loc[today]
    seeds = count(row["seeds"])
    choice = (f"**SASRec's default, chosen on validation.** Of {count(len(selection))} candidates (the reference "
              f"code as it was, each departure alone, in pairs and all three; {seeds} seeds each, validation "
              f"NDCG@10 only), the highest seed mean is {pick}: {num(row['valid ndcg@10'])} (seeds "
              f"{num(row['min'])} to {num(row['max'])}) against {num(base['valid ndcg@10'])} ({num(base['min'])} to "
              f"{num(base['max'])}) for the code as it was"
              + ("; its worst seed is above the old default's best." if row["beyond spread"] else
                 "; the seeds' spreads overlap."))
    if path:
        same = "the same choice" if path[-1] == pick else f"another choice ({path[-1]})"
        choice += (" The pairs were drawn from the departures that did not lose on test alone, which looked at test; "
                   "forward selection on validation alone (from the code as it was, add the departure that most "
                   f"raises the mean while one does) goes {' → '.join(path[1:]) or 'nowhere'}: {same}.")
    rows = []
    for name, t in (elsewhere or {}).items():
        if pick in t.index and today in t.index:
            r, b = t.loc[pick], t.loc[today]
            rows.append(f"On {possessive(name)} validation ({count(r['seeds'])} seeds each, the chosen candidate and "
                        f"the code as it was): {num(r['valid ndcg@10'])} ({num(r['min'])} to {num(r['max'])}) against "
                        f"{num(b['valid ndcg@10'])} ({num(b['min'])} to {num(b['max'])})"
                        + ("; its worst seed is above the old default's best." if r["min"] > b["max"] else
                           "; the seeds' spreads overlap."))
    for name, by_metric in tests.items():
        def seeds_of(t, name, m):
            return (f"{num(t.loc[name, m])} (seeds {num(t.loc[name, f'{m} min'])} to "
                    f"{num(t.loc[name, f'{m} max'])})")
        parts = [f"by {metric}, {_higher('the chosen default', baseline, t.loc[CHOSEN])}; "
                 f"{seeds_of(t, CHOSEN, metric.lower())} against {seeds_of(t, baseline, metric.lower())}, "
                 f"{count(t.loc[CHOSEN, 'seeds'])} seeds each"
                 for metric, t in by_metric.items() if CHOSEN in t.index]
        if parts:
            rows.append(f"On {possessive(name)} test windows (per user the mean over the seeds): "
                        + "; ".join(parts) + ".")
    return bullets(choice, *rows)


# ------------------------------------------------------------------------------ chapter 08: Lite-LLM4Rec


def _rows(paired, metric: str = "ndcg@10"):
    """(method, row) of a paired table's ``metric`` rows (the method a column or the index)."""
    t = paired[paired["metric"] == metric]
    return [(r["method"] if "method" in r.index else m, r) for m, r in t.iterrows()]


def lite_findings(table, vs_sasrec, ablation, cross, cross_ci, cost, main: str = "Lite-LLM4Rec",
                  baseline: str = "SASRec + CE", paper_saved: float = 0.9728) -> str:
    """Chapter 08's findings: inference cost (``cost``: ms/user and the time saved against beam search),
    accuracy on every test window (``table``: :func:`.tables.accuracy_table`; ``vs_sasrec``: paired against
    ``baseline``), the generative runs on the beam users (``cross``, ``cross_ci``: paired against ``main``) and
    the ablations (``ablation``: paired against ``main``); ``paper_saved``: the paper's 97.28% less time."""
    head = cost.loc[[i for i in cost.index if i.startswith("projection head")]]
    every = head.loc[head["users"].idxmax()]
    beam = cost.loc[[i for i in cost.index if i.startswith("constrained beam search")]].iloc[0]
    exact = cost.loc[[i for i in cost.index if i.startswith("exact ranking")]].iloc[0]
    saved = float(head["time saved vs beam"].min())
    speed = (f"**Speed** (paper: {share(paper_saved, 2)} less inference time than generative LLM recommenders). The "
             f"projection head ranks the whole catalogue in {sig(every['ms/user'], 2)} ms per user over "
             f"{count(every['users'])} test windows, against {sig(beam['ms/user'], 3)} ms for {beam.name} and "
             f"{seconds(exact['ms/user'] / 1000)} for {exact.name} on the same machine: "
             f"{share(saved, 1)} less than beam search, so {holds('97.28% less', saved >= paper_saved)}.")
    r, c = table.loc[main], table.loc[baseline]
    epoch = (f", best epoch {count(c['best_epoch'])} of {count(c['epochs_run'])} run"
             if "best_epoch" in c and c["best_epoch"] == c["best_epoch"] else "")
    pairs = {(m, row["metric"]): row for m, row in ((row["method"], row) for _, row in vs_sasrec.iterrows())}
    accuracy = (f"**Accuracy on every test window.** {main} reaches NDCG@10 {num(r['ndcg@10'])} "
                f"[{num(r['ndcg@10 lo'])}, {num(r['ndcg@10 hi'])}] (HR@10 = Recall@10 {num(r['hr@10'])}), {baseline} "
                f"{num(c['ndcg@10'])} [{num(c['ndcg@10 lo'])}, {num(c['ndcg@10 hi'])}]{epoch}. NDCG@10: "
                + "; ".join(_higher(m, baseline, row) for (m, metric), row in pairs.items() if metric == "ndcg@10")
                + f". HR@10: " + "; ".join(_higher(m, baseline, row) for (m, metric), row in pairs.items()
                                          if metric == "hr@10") + ".")
    ci = cross_ci.reset_index() if "method" not in cross_ci.columns else cross_ci
    hits = {m: round(x["hr@10"] * x["n_users"]) for m, x in cross.iterrows()}
    open_ = all(_verdict(row) != "resolved" for _, row in _rows(ci))
    generative = (f"**Against the generative runs** (paper: +46.8% Recall@10). On the {count(cross['n_users'].max())} "
                  f"beam users the top 10 holds the target for {each(hits, count)} users; "
                  + ("every paired NDCG@10 interval against " + main + " contains 0, so the paper's margin is not "
                     "checked at this budget." if open_ else "NDCG@10 against " + main + ": "
                     + "; ".join(_higher(m, main, row) for m, row in _rows(ci)) + "."))
    abl = "; ".join(_higher(m, main, row) + (" (its best epoch is the cap)" if bool(table.loc[m].get("best at cap"))
                                             else "") for m, row in _rows(ablation))
    ablations = f"**Ablations** (NDCG@10, variant − main run): {abl}." if abl else ""
    return bullets(speed, accuracy, generative, ablations)

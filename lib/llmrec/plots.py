"""Every figure of the chapters, one plotting style, and atomic figure saving into ``figures/``.

One vocabulary for every chapter (:mod:`llmrec.core.labels`): each loss in one colour (:data:`LOSS_COLOURS`) and
named as the chapters name it (:data:`LOSS_NAMES`), each axis in words with its unit, and each figure's title
naming the paper's figure or table it reproduces.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib import ticker
from matplotlib.colors import to_rgb
from matplotlib.patches import FancyArrowPatch
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Image, Markdown
from scipy import stats

from .core.io import atomic_write, read_json, repo_root
from .core.metrics import entry_values, mean_interval, no_hit_bound
from .core import labels, losses as L
from .core.profiles import profile as profile_sizes
from .core.labels import LOSS_COLOURS, LOSS_NAMES, loss_colour, loss_name, loss_of, measure  # noqa: F401
from .runs import config_of
from .probes import gaussian_p_valid, log_frame, mean_p_valid, normality, select_positions


def figures_dir() -> Path:
    """Where chapters write their figures: ``$LLMREC_FIGURES`` if set; the committed ``figures/`` only in the
    canonical batch (``make figures``, profile quick: ``$LLMREC_PUBLISH_FIGURES=1``); otherwise
    ``runs/figures/`` (git-ignored), so a chapter run with another profile, dataset or size never overwrites
    the committed figures."""
    env = os.environ.get("LLMREC_FIGURES")
    if env:
        return Path(env)
    return repo_root() / ("figures" if os.environ.get("LLMREC_PUBLISH_FIGURES") == "1" else "runs/figures")


def setup_style() -> None:
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")


def _shade(colour: str, k: int, n: int) -> tuple:
    """The ``k``-th of ``n`` shades of one loss's colour (the last is the colour itself): one loss at several
    settings (SCE at several α) stays recognisably that loss."""
    rgb = np.array(to_rgb(colour))
    return tuple(rgb + (1 - rgb) * 0.55 * (n - 1 - k) / max(n - 1, 1))


def save_figure(fig, name: str, dpi: int = 120) -> Path:
    """Write ``<name>.png`` into :func:`figures_dir` atomically and return its path (the chapter prints it)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    path = figures_dir() / f"{name}.png"
    atomic_write(path, buf.getvalue())
    return path


def reference_figure(name: str, profile: str, dataset: str, reference: str = "laptop") -> list:
    """What to show beside a chapter's figure ``name`` drawn under ``profile`` where the committed ``reference``
    results evaluate beam search on more users (``quick``: 16 test users, on which no run hits a target): a caption
    that says which results it shows and ``figures/<reference>/<name>.png`` (drawn from ``results/<reference>/llm/``
    by the chapter run with ``-p results <reference>``), for ``display(*...)``; nothing where this run is at least
    that large, is on another dataset than the reference's or the reference has no such figure."""
    ours, ref = profile_sizes(profile), profile_sizes(reference)
    path = repo_root() / "figures" / reference / f"{name}.png"
    if (dataset != ref["dataset"] or ours["eval_users"] is None or ours["eval_users"] >= ref["eval_users"]
            or not path.exists()):
        return []
    caption = (f"**Beside it, the committed `{reference}` reference** (`figures/{reference}/{name}.png`, drawn from "
               f"`results/{reference}/llm/` by this chapter with `-p results {reference}`): the same runs at "
               f"{ref['n_train']:,} training windows × {ref['epochs']} epochs, the likelihood on "
               f"{ref['likelihood_users']:,} users and beam search on {ref['eval_users']:,} test users, where the "
               f"`{profile}` run above has {ours['eval_users']:,}.")
    return [Markdown(caption), Image(filename=str(path))]


def plot_valid_set_sizes(sizes: dict[str, pd.DataFrame], max_position: int = 20):
    """Chapter 01 (the valid sets behind Table 4's AVT): mean and median |Z_valid| by response position, and the
    cumulative share of token instances with |Z_valid| <= k (log x)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for k, (name, df) in enumerate(sizes.items()):
        by = df[df.position < max_position].groupby("position").n_valid
        a.plot(by.mean().index, by.mean().values, marker="o", color=f"C{k}", label=f"{name}: mean")
        a.plot(by.median().index, by.median().values, ls="--", color=f"C{k}", alpha=0.7, label=f"{name}: median")
        x = np.sort(df.n_valid.to_numpy())
        b.step(x, np.arange(1, len(x) + 1) / len(x), where="post", lw=2, color=f"C{k}",
               label=f"{name} (AVT {x.mean():.1f}, {(x == 1).mean():.0%} singletons)")
    a.set(yscale="log", xlabel="position t in the target title (0 = opening quote)",
          ylabel="valid next tokens |Z_valid(y_<t)| (log scale)",
          title="Valid next tokens by position (AVT, Table 4)", xticks=range(0, max_position, 2))
    b.set(xscale="log", ylim=(0, 1.02), xlabel="valid next tokens |Z_valid(y_<t)| (log scale)",
          ylabel="share of target tokens with at most x", title="Over all training-target tokens (Table 4)")
    a.legend(fontsize=8)
    b.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def plot_sorted_weights(frame: pd.DataFrame, threshold: float = 0.1, first: int = 3):
    """Figure 5: the weights of a batch sorted in descending order, LML vs MSL; and MSL's by position."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for loss in ("lml", "msl"):
        w = np.sort(frame[f"w_{loss}"].to_numpy())[::-1]
        a.plot(np.arange(len(w)), w, lw=2, color=LOSS_COLOURS[loss],
               label=f"{LOSS_NAMES[loss]} (mean {w.mean():.2f})")
    a.axhline(threshold, color="grey", ls=":", lw=1, label=f"small: w < {threshold:g}")
    a.set(xlabel="target-title tokens of the batch, sorted by weight", ylabel="gradient weight w(y_t) = 1 − P(y_t)",
          ylim=(-0.02, 1.02), title="Gradient weights of one batch (Figure 5)")
    multi = frame[frame.n_valid > 1]
    top = int(min(multi.position.max() + 1 if len(multi) else 1, 12))
    data = [multi.w_msl[multi.position == t].to_numpy() for t in range(top)]
    b.boxplot([d if len(d) else [np.nan] for d in data], positions=range(top), widths=0.6, showfliers=False)
    for t, d in enumerate(data):
        b.scatter(np.full(len(d), t) + np.random.default_rng(t).uniform(-0.2, 0.2, len(d)), d, s=6, alpha=0.4,
                  color=LOSS_COLOURS["msl"])
    b.axhline(threshold, color="grey", ls=":", lw=1)
    b.axvspan(-0.5, first - 0.5, color="grey", alpha=0.1, label=f"the first {first} positions")
    b.set(xlabel="position t in the target title (|Z_valid| > 1 only)", ylabel="MSL gradient weight w(y_t)",
          ylim=(-0.02, 1.02), title="MSL weights by position (Figure 5)")
    a.legend()
    b.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def plot_ats_roots(vs: dict[str, L.ValidLogits], tables: dict[str, pd.DataFrame], eta: float = 0.25,
                   taus=np.logspace(-1.3, 2.3, 60)):
    """Mean P_valid(y_t) against tau (exact, and eq. 12's Gaussian approximation) with eq. 12's roots, one panel
    per dataset."""
    fig, axes = plt.subplots(1, len(vs), figsize=(5.5 * len(vs), 4), squeeze=False)
    for ax, (name, v) in zip(axes[0], vs.items()):
        multi = select_positions(v, v.keep & (v.n_valid > 1))
        ax.plot(taus, [mean_p_valid(multi, t) for t in taus], lw=2, color="k", label="exact mean P_valid(y_t)")
        t = tables[name]
        for k, positions in enumerate(t.statistics.unique()):
            rows = t[t.statistics == positions]
            r = rows.iloc[int(np.argmin(np.abs(rows.eta.to_numpy() - eta)))]
            ax.plot(taus, gaussian_p_valid(r["delta"], r["sigma2"], r["m"], taus), ls="--", color=f"C{k}",
                    label=f"Gaussian approx. ({positions} statistics)")
            real = r["discriminant"] >= 0
            for root, mk in (("+", "o"), ("-", "x")):
                tr = r[f"tau ({root})"]
                if np.isfinite(tr):
                    ax.plot([tr], [eta], marker=mk, ms=9, ls="none", color=f"C{k}", mew=2, alpha=1 if real else 0.5,
                            label=f"{positions} root ({root}) = {tr:.2f}" + ("" if real else " (discriminant < 0)"))
        num = t["tau numeric"].iloc[int(np.argmin(np.abs(t.eta.to_numpy() - eta)))]
        if np.isfinite(num):
            ax.axvline(num, color="k", ls=":", label=f"numeric root = {num:.2f}")
        ax.axhline(eta, color="grey", lw=1)
        ax.set(xscale="log", ylim=(0, 1), xlabel="temperature τ (log scale)",
               ylabel="mean P_valid(y_t) over target tokens", title=f"{name}: roots of eq. (12) at η = {eta:g}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_logit_histograms(samples: dict[str, np.ndarray], bins: int = 80):
    """Figure 8: standardised valid-token logits with the fitted Gaussian, one panel per dataset."""
    fig, axes = plt.subplots(1, len(samples), figsize=(5.5 * len(samples), 4), squeeze=False)
    for ax, (name, x) in zip(axes[0], samples.items()):
        mu, sd = stats.norm.fit(x)
        nm = normality(x)
        ax.hist(x, bins=bins, density=True, alpha=0.6, label=f"{len(x):,} valid-token logits")
        grid = np.linspace(x.min(), x.max(), 300)
        ax.plot(grid, stats.norm.pdf(grid, mu, sd), lw=2, color="C3",
                label=f"N({mu:.2f}, {sd:.2f}²)\nskew {nm['skew']:.2f}, ex. kurt. {nm['excess_kurtosis']:.2f}\n"
                      f"KS distance {nm['ks_distance']:.3f}")
        ax.set(xlabel="valid-token logit, standardised per position (standard deviations)", ylabel="density",
               title=f"{name}: valid-token logits (Figure 8)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_log_curves(curves: dict[str, Path], columns, smooth: int = 5, title: str = "", logy: bool = False,
                    ylabel: str | None = None):
    """Step curves of logged columns (e.g. grad_norm_l1/l2, l2, tau) for several runs, with a rolling mean of
    ``smooth`` steps; each column named in words (:func:`measure`), in a shade of the colour of the run's loss
    (dashed after the first), ``ylabel`` the axis."""
    columns = [columns] if isinstance(columns, str) else list(columns)
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.6), squeeze=False, sharey=False)
    for ax, (name, run) in zip(axes[0], curves.items()):
        df = log_frame(run)
        colour = LOSS_COLOURS.get(config_of(run).get("loss"), labels.NEUTRAL)
        for k, c in enumerate(columns):
            if c in df:  # a column logged every k steps only: its own steps
                d = df[["step", c]].dropna()
                ax.plot(d["step"], d[c].rolling(smooth, min_periods=1).mean(), label=measure(c),
                        color=_shade(colour, len(columns) - 1 - k, len(columns)), ls="-" if k == 0 else "--")
        ax.set(title=name, xlabel="training step",
               ylabel=(ylabel or (measure(columns[0]) if len(columns) == 1 else "")) + (" (log scale)" * logy))
        if logy:
            ax.set_yscale("log")
        ax.legend(title=f"mean of {smooth} steps" if smooth > 1 else None, fontsize=8, title_fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_overlay(curves: dict[str, Path], column: str, smooth: int = 5, title: str = ""):
    """One logged column of several runs on one axis (Figure 4: L2 under LML vs L2-only training), each run in
    the colour of its loss (:func:`loss_colour` of its name), a rolling mean of ``smooth`` steps."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, run in curves.items():
        df = log_frame(run)
        ax.plot(df["step"], df[column].rolling(smooth, min_periods=1).mean(), color=loss_colour(name), label=name)
    ax.set(xlabel="training step", ylabel=measure(column), title=title)
    ax.legend(title=f"mean of {smooth} steps" if smooth > 1 else None, fontsize=8, title_fontsize=8)
    fig.tight_layout()
    return fig


def no_hit_note(users: dict[str, int], metric: str, what: str = "run", hint: str | None = None) -> str:
    """What to say instead of a plot whose points would all lie at 0: no beam hit any target among ``users``
    ({split: number of beam users, the fewest where runs differ}), so ``metric`` is unresolved, each value only
    bounded by :func:`no_hit_bound` (the bound of the fewest users holds for all); ``hint``: where it resolves."""
    return (f"no {what} hit a target among its beam users ({', '.join(f'{n} {split}' for split, n in users.items())}):"
            f"\n{metric} is unresolved at this scale; each value lies\nbelow "
            f"{', '.join(f'{no_hit_bound(n):.3f} ({split})' for split, n in users.items())} (exact 95% binomial "
            "bound, about 3/N)" + (f";\n{hint}." if hint else "."))


def no_hit_panel(ax, users: dict[str, int], metric: str, what: str = "run", hint: str | None = None) -> None:
    """:func:`no_hit_note` in place of the panel ``ax``."""
    ax.axis("off")  # not ax.set(xticks=[]): that would clear a shared x axis too
    ax.text(0.5, 0.5, no_hit_note(users, metric, what, hint), ha="center", va="center", transform=ax.transAxes,
            fontsize=8, wrap=True, bbox=dict(boxstyle="round", fc="white", ec="0.7"))


def _beam_users(rows: pd.DataFrame) -> dict[str, int]:
    return {split: int(g["beam users"].min()) for split, g in rows.groupby("split")}


def _beam_metrics(rows: pd.DataFrame) -> str:
    return "beam " + "/".join(m.upper() for m in dict.fromkeys(rows["beam metric"]))


_SPLIT_STYLE = {"test": dict(marker="o", ls="-"), "valid": dict(marker="s", ls="--", mfc="white")}


def plot_tau_sweep(sweep: pd.DataFrame, paper: dict | None = None, hint: str | None = None):
    """Figure 6, one column per dataset: mean -log P_valid of the target title against tau (95% interval, lower
    is better) on validation and test, and below it the beam metric of each split with its 95% interval, in MSL's
    colour (test: solid, validation: dashed). Where no run hit any target the beam panel is :func:`no_hit_panel`
    (no dataset with a hit: one row and the note, with ``hint``, below it); the paper's best tau marked."""
    dss = list(dict.fromkeys(sweep["dataset"]))
    hits = {ds: bool((sweep.loc[sweep["dataset"] == ds].apply(lambda r: r[r["beam metric"]], axis=1) > 0).any())
            for ds in dss}
    rows = 2 if any(hits.values()) else 1
    note_h = 0.75 * len(dss) * (rows == 1)  # inches of text under a single row
    fig, axes = plt.subplots(rows, len(dss), figsize=(5 * len(dss), 3.2 * rows + note_h), squeeze=False,
                             sharex="col")
    for col, ds in enumerate(dss):
        top = axes[0, col]
        ours = sweep[sweep["dataset"] == ds]
        for split, g in ours.groupby("split"):
            top.errorbar(g["tau"], g["nll_valid"], yerr=[g["nll_valid"] - g["lo"], g["hi"] - g["nll_valid"]],
                         capsize=3, **_SPLIT_STYLE.get(split, {}), color=LOSS_COLOURS["msl"],
                         label=f"{labels.value('split', split)} ({int(g['users'].iloc[0])} users)")
        if paper and ds in paper:
            top.axvline(paper[ds], color="grey", ls=":", label=f"paper's best τ ({paper[ds]:g})")
        top.set(title=f"{ds}: MSL at fixed τ (Figure 6)", ylabel=measure("nll_valid"))
        top.legend(fontsize=8)
        if rows == 1 or not hits[ds]:
            top.set_xlabel(measure("tau"))
            top.xaxis.set_tick_params(labelbottom=True)
        if rows == 1:
            continue
        bottom = axes[1, col]
        if not hits[ds]:
            no_hit_panel(bottom, _beam_users(ours), _beam_metrics(ours), hint=hint)
            continue
        for split, g in ours.groupby("split"):
            m = g["beam metric"].iloc[0]
            bottom.errorbar(g["tau"], g[m], yerr=[g[m] - g["beam lo"], g["beam hi"] - g[m]], capsize=3,
                            **_SPLIT_STYLE.get(split, {}), color=LOSS_COLOURS["msl"],
                            label=f"{labels.value('split', split)}: {measure(m)} "
                                  f"({int(g['beam users'].iloc[0])} users)")
        if paper and ds in paper:
            bottom.axvline(paper[ds], color="grey", ls=":", label=f"paper's best τ ({paper[ds]:g})")
        bottom.set(xlabel=measure("tau"), ylabel="NDCG by beam search (95% interval)", ylim=(0, None))
        bottom.legend(fontsize=8)
    if rows == 1:
        fig.text(0.5, 0.01, "\n".join(f"{ds}: " + no_hit_note(_beam_users(sweep[sweep["dataset"] == ds]),
                                                               _beam_metrics(sweep[sweep["dataset"] == ds]),
                                                               hint=hint) for ds in dss),
                 ha="center", va="bottom", fontsize=7.5)
        fig.tight_layout(rect=(0, note_h / fig.get_figheight(), 1, 1))
    else:
        fig.tight_layout()
    return fig


def plot_accuracy_vs_time(evals: dict[str, tuple[Path, dict]], metric: str = "ndcg@10", title: str = "", ax=None,
                          split: str = "test", hint: str | None = None):
    """Figure 7: a per-user measure (a ranking metric, or a likelihood such as ``nll_valid``) against training
    seconds, with its 95% bootstrap interval per method, in the colour of its loss (never below 0 for a metric that
    is not). A ranking metric that no method scores above 0 (on its ``split`` users) is not drawn as a flat line:
    :func:`no_hit_panel` says so instead, with ``hint``."""
    fig, ax = (plt.subplots(figsize=(5.5, 3.8)) if ax is None else (ax.figure, ax))
    values = {name: entry_values(ev, metric) for name, (_, ev) in evals.items()}
    if values and not metric.startswith("nll") and not any(v.any() for v in values.values()):
        no_hit_panel(ax, {split: min(len(v) for v in values.values())}, metric.upper(), what="method", hint=hint)
        ax.set_title(title)
        return fig
    for name, (run, ev) in evals.items():
        mean, lo, hi = mean_interval(values[name])
        t = read_json(Path(run) / "done.json")["train_seconds"]
        ax.errorbar([t], [mean], yerr=[[mean - lo], [hi - mean]], fmt="o", capsize=4, color=loss_colour(name),
                    label=name)
    ax.set(xlabel=measure("train_s"), title=title,
           ylabel=measure(metric) + ("\nlower is better" if metric.startswith("nll") else " (95% interval)"))
    if not metric.startswith("nll"):
        ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_paired(table: pd.DataFrame, diff: str, title: str = "", xlabel: str | None = None,
                loss: str | None = None):
    """A forest plot: each row's paired difference ``diff`` with its interval (``lo``, ``hi``); 0 marked. Every row
    in the colour of ``loss`` where given (the variants of one model: "lite"), else each in that of the loss its
    name names (:func:`loss_colour`; grey for none)."""
    t = table.dropna(subset=[diff])[::-1]
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(t) + 1.5))
    y = np.arange(len(t))
    colours = [LOSS_COLOURS[loss] if loss else loss_colour(name) for name in t.index]
    for k, (d, lo, hi) in enumerate(zip(t[diff], t["lo"], t["hi"])):
        ax.errorbar([d], [k], xerr=[[d - lo], [hi - d]], fmt="o", capsize=4, color=colours[k])
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(y, t.index)
    ax.locator_params(axis="x", nbins=5)
    ax.set(title=title, xlabel=xlabel or f"{measure(diff)} (95% interval)")
    fig.tight_layout()
    return fig


def plot_sce_grid(grid, ce_ndcg: float | None = None, metric: str = "ndcg@10", title: str | None = None,
                  ce_interval: tuple[float, float] | None = None):
    """Metric vs K, one line per alpha, each cell with its 95% interval where ``grid`` has ``<metric> lo/hi``
    (cells of one K drawn side by side): sampled softmax (α = 1) in its colour, SCE in shades of its own (darker
    for larger α); a dashed line for full-softmax CE, its interval ``ce_interval`` shaded."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    alphas = sorted(grid["alpha"].unique())
    sce = [a for a in alphas if a != 1]
    markers = "os^Dv"
    for j, a in enumerate(alphas):
        g = grid[grid["alpha"] == a].sort_values("K")
        if a == 1:
            label, colour = f"{LOSS_NAMES['sampled-softmax']} (α = 1)", LOSS_COLOURS["sampled-softmax"]
        else:
            label, colour = f"{LOSS_NAMES['sce']}, α = {a:g}", _shade(LOSS_COLOURS["sce"], sce.index(a), len(sce))
        x = g["K"] * 1.06 ** (j - (len(alphas) - 1) / 2)  # a small offset on the log axis
        style = dict(marker=markers[j % len(markers)], color=colour, label=label)
        if f"{metric} lo" in g:
            ax.errorbar(x, g[metric], yerr=[g[metric] - g[f"{metric} lo"], g[f"{metric} hi"] - g[metric]],
                        capsize=3, **style)
        else:
            ax.plot(x, g[metric], **style)
    if ce_ndcg is not None:
        ax.axhline(ce_ndcg, ls="--", color=LOSS_COLOURS["ce"], lw=1, label=f"full-softmax {LOSS_NAMES['ce']}")
        if ce_interval is not None:
            ax.axhspan(*ce_interval, color=LOSS_COLOURS["ce"], alpha=0.08, lw=0)
    ax.set_xscale("log")
    ks = sorted(grid["K"].unique())
    ax.set_xticks(ks, [str(int(k)) for k in ks])
    ax.minorticks_off()
    ax.set_ylim(bottom=0)
    ax.set_xlabel("K uniform negatives per training sequence (log scale)")
    ax.set_ylabel(f"{measure(metric)} (95% interval)")
    ax.set_title(title or "SASRec: sampled softmax and SCE against full CE (SCE paper)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_ats_trace(trace: pd.DataFrame, clamp=(1.5, 5.0), title: str = ""):
    """tau during an ``msl-ats`` run: the smoothed value that trained and eq. (12)'s raw root (gaps: no root), in
    the colour of MSL + ATS."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    colour = LOSS_COLOURS["msl-ats"]
    ax.plot(trace["step"], trace["tau"], color=colour, lw=2, label="τ used in training (EMA, clamped)")
    ax.plot(trace["step"], trace["ats_tau_raw"], "o", ms=3, color=_shade(colour, 0, 2),
            label="raw root of eq. (12) (gaps: no positive root)")
    for k, c in enumerate(clamp or ()):
        ax.axhline(c, color="grey", ls=":", lw=1, label=f"clamp ({' and '.join(f'{b:g}' for b in clamp)})" if k == 0
                   else None)
    ax.set(xlabel="training step", ylabel="temperature τ (log scale)", yscale="log", title=title)
    # 1, 2, 5 instead of 10^0, 2 x 10^0, 5 x 10^0; the 2, 3, 5 between powers of ten only on a short axis
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    lo, hi = ax.get_ylim()
    ax.yaxis.set_minor_formatter(ticker.FuncFormatter(
        lambda v, _: f"{v:g}" if round(v / 10 ** np.floor(np.log10(v))) in (2, 3, 5) and hi / lo < 30 else ""))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_lite_architecture(n_items: int | None = None, rec_layers: int = 8, head: str = "MLP"):
    """Lite-LLM4Rec drawn: item texts -> item LLM (once, cached) -> adapter -> recommendation LLM -> head."""
    fig, ax = plt.subplots(figsize=(9, 3.4))
    ax.set_axis_off()
    ax.set(xlim=(0, 10), ylim=(0, 4))
    boxes = [(0.0, "item texts\n(titles)", "#eeeeee"),
             (2.05, "item LLM\nSmolLM2, mean pool\n(once per catalogue,\ncached)", "#cfe2f3"),
             (4.1, "adapter\nd_item → d_model", "#fff2cc"),
             (6.15, f"recommendation LLM\n{rec_layers} SmolLM2 blocks\n+ LoRA, causal", "#cfe2f3"),
             (8.2, f"item projection\nhead ({head})\n→ {n_items or 'all'} item scores", "#d9ead3")]
    w = 1.6
    for x, text, color in boxes:
        ax.add_patch(plt.Rectangle((x, 1.3), w, 1.6, facecolor=color, edgecolor="k"))
        ax.text(x + w / 2, 2.1, text, ha="center", va="center", fontsize=8)
    for (x, *_), (nx, *_) in zip(boxes, boxes[1:]):
        ax.add_patch(FancyArrowPatch((x + w + 0.03, 2.1), (nx - 0.03, 2.1), arrowstyle="-|>", mutation_scale=14,
                                     color="k"))
    ax.text(5, 0.6, "history i_1 … i_t  →  vectors z_i1 … z_it  →  h_1 … h_t;  h_t scores every item in one "
                    "product (no titles generated, no beam search)", ha="center", fontsize=8)
    ax.text(5, 3.5, "Lite-LLM4Rec (Wang et al. 2024) as built here", ha="center", fontsize=10)
    fig.tight_layout()
    return fig


def plot_inference_cost(cost: pd.DataFrame, title: str = ""):
    """Milliseconds per user of each way to rank (log scale), with the users each was timed on; Lite-LLM4Rec's
    projection head in its colour, the generative LLM's ways in grey."""
    t = cost[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(t) + 1.4))
    ax.barh(np.arange(len(t)), t["ms/user"], color=[loss_colour(name) for name in t.index])
    for y, (ms, n) in enumerate(zip(t["ms/user"], t["users"])):
        ax.text(ms * 1.1, y, f"{ms:,.1f} ms ({n} users)", va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_yticks(np.arange(len(t)), t.index)
    ax.set(xlabel="time to rank the catalogue for one user (ms, log scale)", title=title,
           xlim=(t["ms/user"].min() / 3, t["ms/user"].max() * 30))
    fig.tight_layout()
    return fig


def plot_interval_table(table: pd.DataFrame, metric: str = "ndcg@10", title: str = ""):
    """Each row's ``metric`` with its interval (``<metric> lo``, ``<metric> hi``), in the colour of its loss; the
    axis starts at 0."""
    t = table[::-1]
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(t) + 1.5))
    y = np.arange(len(t))
    for k, (name, row) in enumerate(t.iterrows()):
        m = row[metric]
        ax.errorbar([m], [k], xerr=[[m - row[f"{metric} lo"]], [row[f"{metric} hi"] - m]], fmt="o", capsize=4,
                    color=loss_colour(name))
    ax.set_yticks(y, t.index)
    ax.set_xlim(left=0)
    ax.set(title=title, xlabel=f"{measure(metric)} (95% bootstrap interval over users)")
    fig.tight_layout()
    return fig


DATASET_MARKERS = ("o", "s", "^", "D", "v")  # chapter 09: one marker per dataset (the colour is the method's loss)


def plot_transfer(table: pd.DataFrame, title: str = ""):
    """Chapter 09's verdicts (a table of :func:`llmrec.experiments.transfer.transfer_table`): a panel per measure,
    a row per claim, a point per dataset (one marker each): the paired difference (method − baseline) turned so
    that > 0 is the direction the paper reports (``expects``: a likelihood's "lower" is flipped), with its 95%
    interval, in the colour of the method's loss (:func:`llmrec.core.labels.loss_colour`, as in every chapter);
    filled where the verdict is resolved (holds or reversed), hollow where it is unresolved."""
    metrics = [m for m in ("nll_valid", "ndcg@10", "hr@10") if m in set(table["metric"])]
    datasets = list(dict.fromkeys(table["dataset"]))
    claims = list(dict.fromkeys(table["claim"]))[::-1]
    colour = {c: loss_colour(m) for c, m in zip(table["claim"], table["method"])}
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics) + 3, 0.42 * len(claims) + 1.9),
                             sharey=True, squeeze=False)
    seen = {}
    for ax, m in zip(axes[0], metrics):
        rows = table[table["metric"] == m]
        for j, ds in enumerate(datasets):
            marker = DATASET_MARKERS[j % len(DATASET_MARKERS)]
            g = rows[rows["dataset"] == ds].dropna(subset=["diff"])
            if g.empty:
                continue
            s = np.where(g["expects"] == "lower", -1.0, 1.0)
            d, a, b = (s * g[c].to_numpy(float) for c in ("diff", "lo", "hi"))
            lo, hi = np.minimum(a, b), np.maximum(a, b)
            y = np.array([claims.index(c) for c in g["claim"]]) + 0.18 * (j - (len(datasets) - 1) / 2)
            colours = [colour[c] for c in g["claim"]]
            solid = g["verdict"].isin(["holds", "reversed"]).to_numpy()
            for k in range(len(g)):
                ax.errorbar(d[k], y[k], xerr=[[d[k] - lo[k]], [hi[k] - d[k]]], fmt="none", capsize=3,
                            color=colours[k])
                ax.scatter(d[k], y[k], marker=marker, zorder=3, edgecolor=colours[k],
                           facecolor=colours[k] if solid[k] else "white")
            seen[ds] = plt.Line2D([], [], marker=marker, ls="", color="0.3")
        ax.axvline(0, color="grey", lw=1)
        ax.locator_params(axis="x", nbins=4)
        ax.tick_params(axis="x", labelsize=8)
        ax.set(title=measure(m), xlabel="method − baseline\n(> 0: the paper's direction)")
        if not rows["diff"].notna().any():
            ax.text(0.5, 0.5, "no run", transform=ax.transAxes, ha="center", va="center", color="grey")
    axes[0][0].set_yticks(np.arange(len(claims)), claims)
    for label in axes[0][0].get_yticklabels():
        label.set_color(colour[label.get_text()])
    axes[0][0].set_ylim(-0.6, len(claims) - 0.4)
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="lower center", ncol=len(seen), frameon=False,
                   title="each claim in its method's colour; filled: resolved (holds or reversed); hollow: unresolved")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.14 if seen else 0, 1, 1))
    return fig

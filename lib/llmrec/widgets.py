"""Interactive explorers for the chapters (ipywidgets).

Each ``*_explorer`` / ``tau_slider`` returns a widget and computes nothing heavy
until the reader interacts with it, so a chapter executed headless (papermill)
only builds the widget. The work behind each one is a plain function
(:func:`explore_prefix`, :func:`recommend`) that tests and notebooks can call
without a frontend.
"""

from __future__ import annotations

import html
import inspect
import io

import numpy as np
import pandas as pd
import torch

import ipywidgets as W
import matplotlib.pyplot as plt
from IPython.display import Code

from .core import losses as L
from .llm.decode import beam_search
from .probes import items_below, position_probs


def show_code(*objects) -> Code:
    """The source of functions or classes as one highlighted block: how a chapter shows an equation's code."""
    return Code("\n\n".join(inspect.getsource(o) for o in objects), language="python")


def token_label(tok, token_id: int) -> str:
    """A token as readable text: spaces shown as '␣', EOS as its name."""
    if tok is None:
        return str(token_id)
    if token_id == tok.eos_token_id:
        return tok.eos_token
    return tok.decode([int(token_id)]).replace(" ", "␣").replace("\n", "⏎")


# ============================================================================ trie explorer


def explore_prefix(trie, tok, prefix_ids, items: dict[int, str] | None = None, max_items: int = 10) -> dict:
    """What the trie says about a token prefix of a response.

    Returns ``valid`` ([(token id, label, number of items below prefix + token)], most items first),
    ``n_items`` below the prefix, ``titles`` (up to ``max_items`` of them, as ``(item id, title)``) and
    ``text`` (the prefix decoded). An unknown prefix has no valid tokens and no items.
    """
    prefix_ids = [int(t) for t in prefix_ids]
    below = items_below(trie, prefix_ids) if trie.node_of(prefix_ids) >= 0 else []
    valid = [(t, token_label(tok, t), len(items_below(trie, prefix_ids + [t]))) for t in trie.valid_next(prefix_ids)]
    valid.sort(key=lambda r: (-r[2], r[0]))
    titles = items or getattr(trie, "titles", {})
    return {"prefix": prefix_ids, "text": tok.decode(prefix_ids) if tok is not None else str(prefix_ids),
            "valid": valid, "n_items": len(below), "titles": [(i, titles.get(i, "?")) for i in below[:max_items]]}


def longest_prefix(trie, ids) -> list[int]:
    """The longest prefix of ``ids`` that starts some catalogue response."""
    node, out = torch.zeros(1, dtype=torch.long), []
    for t in ids:
        node = trie.advance(node, torch.tensor([int(t)]))
        if node[0] < 0:
            break
        out.append(int(t))
    return out


def _prefix_html(info: dict, note: str = "") -> str:
    rows = "".join(f"<li>{i}: {html.escape(t)}</li>" for i, t in info["titles"])
    rest = info["n_items"] - len(info["titles"])
    more = f"<li>… {rest:,} more</li>" if rest > 0 else ""
    return (f"<b>prefix</b> <code>{html.escape(info['text']) or '(empty: the root)'}</code> "
            f"= {len(info['prefix'])} tokens {html.escape(note)}<br>"
            f"<b>|Z_valid|</b> = {len(info['valid'])} valid next tokens; <b>{info['n_items']:,}</b> items below"
            f"<ul>{rows}{more}</ul>")


def trie_explorer(trie, items: dict[int, str], tok, max_options: int = 300, max_items: int = 10):
    """Walk the token trie: pick a valid next token (or type the start of a title) and see Z_valid and the
    items below the prefix. Returns the widget."""
    state = {"prefix": []}
    text = W.Text(placeholder="type the start of a title, e.g. Lego", description="type:",
                  layout=W.Layout(width="60%"), continuous_update=False)
    select = W.Select(options=[], rows=12, description="next token:", layout=W.Layout(width="60%"))
    back, reset = W.Button(description="back"), W.Button(description="reset")
    out = W.HTML()

    def refresh(note=""):
        info = explore_prefix(trie, tok, state["prefix"], items, max_items)
        opts = [(f"{lab!r}  ({n:,} items)", t) for t, lab, n in info["valid"][:max_options]]
        select.unobserve(on_pick, names="value")
        select.options, select.value = opts, None
        select.observe(on_pick, names="value")
        out.value = _prefix_html(info, note)

    def on_pick(change):
        if change["new"] is not None:
            state["prefix"] = state["prefix"] + [int(change["new"])]
            refresh()

    def on_type(change):
        ids = tok(f'"{change["new"]}', add_special_tokens=False)["input_ids"]
        state["prefix"] = longest_prefix(trie, ids)
        refresh(f"(typed text = {len(ids)} tokens; the first {len(state['prefix'])} start a title)")

    def on_back(_):
        state["prefix"] = state["prefix"][:-1]
        refresh()

    def on_reset(_):
        state["prefix"] = []
        refresh()

    select.observe(on_pick, names="value")
    text.observe(on_type, names="value")
    back.on_click(on_back)
    reset.on_click(on_reset)
    refresh()
    return W.VBox([text, W.HBox([back, reset]), select, out])


# ============================================================================ temperature slider


def plot_position(v, row: int, tau: float, tok=None, tokens=None, top: int = 20, ax=None):
    """Bar chart of P_valid over the ``top`` valid tokens (by logit) of one position at ``tau``; y_t in red."""
    df = position_probs(v, row, tau)
    shown = df.head(top)
    if not shown.is_target.any():
        shown = pd.concat([shown, df[df.is_target]])
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3.5))
    labels = [token_label(tok, int(tokens[c])) if tokens is not None else str(c) for c in shown.column]
    ax.bar(range(len(shown)), shown.p_valid, color=np.where(shown.is_target, "C3", "C0"))
    ax.set_xticks(range(len(shown)), labels, rotation=60, ha="right", fontsize=8)
    p = float(df.p_valid[df.is_target].iloc[0])
    w_lml = float(L.gradient_weights(v, over="all")[row]) if v.lse_all is not None else np.nan
    ax.set(ylim=(0, 1), ylabel="P_valid(z)",
           title=f"τ = {tau:.2f}: P_valid(y_t) = {p:.3f}, MSL w = {1 - p:.3f} (LML w at τ=1: {w_lml:.3f}); "
                 f"|Z_valid| = {len(df)}")
    return ax


def tau_slider(v, row: int, tok=None, tokens=None, tau: float = 1.0, tau_range=(0.2, 10.0), top: int = 20):
    """A τ slider on one real response position: P_valid of its valid tokens and w(y_t) = 1 - P_valid(y_t)
    (eq. 10). ``tokens`` (the batch's ``valid_tokens[row]``) and ``tok`` label the bars. Returns the widget.

    The plot is a PNG in an Image widget, redrawn on each move: no Output widget, whose captured and cleared
    outputs a headless run (papermill) sometimes waited on forever."""
    slider = W.FloatLogSlider(value=tau, base=10, min=np.log10(tau_range[0]), max=np.log10(tau_range[1]), step=0.02,
                              description="τ", continuous_update=False)
    image = W.Image(format="png")

    def draw(change=None):
        fig, ax = plt.subplots(figsize=(9, 3.5))
        plot_position(v, row, slider.value, tok, tokens, top, ax)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        plt.close(fig)
        image.value = buf.getvalue()

    slider.observe(draw, names="value")
    draw()
    return W.VBox([slider, image])


# ============================================================================ user explorer


def recommend(rec, models: dict, row: int, split: str = "test", num_beams: int = 10) -> dict:
    """History, target and the constrained-beam-search top-``num_beams`` titles of each model for one window
    of ``split``: ``{"history": [titles], "target": title, "table": DataFrame (rank x model),
    "hit": {model: 0-based rank of the target or None}, "user_id": ...}``."""
    df = rec.ds.split(split)
    w = df.iloc[int(row)]
    prompt = rec.encoder.prompt_ids(list(w["history"]))
    cols, hit = {}, {}
    for name, model in models.items():
        res = beam_search(model, prompt, rec.trie, num_beams=num_beams)
        titles = [rec.ds.items[ids[0]] for ids, _ in res]
        cols[name] = titles + [""] * (num_beams - len(titles))
        hit[name] = next((k for k, (ids, _) in enumerate(res) if int(w["target"]) in ids), None)
    table = pd.DataFrame(cols, index=pd.RangeIndex(1, num_beams + 1, name="rank"))
    return {"history": [rec.ds.items[i] for i in w["history"]][-rec.encoder.max_history:],
            "target": rec.ds.items[int(w["target"])], "table": table, "hit": hit, "user_id": w.get("user_id")}


def _recommend_html(r: dict) -> str:
    hist = "".join(f"<li>{html.escape(t)}</li>" for t in r["history"])
    t = r["target"]
    cells = r["table"].map(lambda s: f"<b style='color:#c0392b'>{html.escape(s)}</b>" if s == t else html.escape(s))
    hits = ", ".join(f"{m}: {'rank ' + str(k + 1) if k is not None else 'not in top list'}"
                     for m, k in r["hit"].items())
    return (f"<b>user</b> {r['user_id']}<br><b>history</b> (oldest first, as prompted)<ol>{hist}</ol>"
            f"<b>target</b>: {html.escape(t)} ({hits})<br>{cells.to_html(escape=False)}")


def user_explorer(rec, models: dict, split: str = "test", num_beams: int = 10):
    """Pick a window of ``split``: its history, target and each model's top titles (constrained beam search,
    computed only when the button is pressed). Returns the widget."""
    n = len(rec.ds.split(split))
    pick = W.BoundedIntText(value=0, min=0, max=n - 1, description=f"{split} row:")
    go = W.Button(description=f"recommend (top {num_beams})")
    out = W.HTML(value=f"<i>{n:,} {split} windows; pick one and press the button "
                       f"({len(models)} model(s): {', '.join(models)}).</i>")

    def on_go(_):
        out.value = "<i>beam search …</i>"
        try:
            out.value = _recommend_html(recommend(rec, models, pick.value, split, num_beams))
        except Exception as e:  # show, do not kill the widget
            out.value = f"<pre>{html.escape(type(e).__name__ + ': ' + str(e))}</pre>"

    go.on_click(on_go)
    return W.VBox([W.HBox([pick, go]), out])

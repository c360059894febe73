"""The three profiles (DESIGN.md): one parameter that sizes notebooks, CLI runs and papermill batches.

* ``smoke``: synthetic catalogue, tiny random Llama; every path runs in seconds (tests, CI).
* ``quick``: real Toy/Books, the whole SmolLM2-135M with LoRA on its last 4 blocks
  only (the 26 frozen blocks below run once per training window and are cached,
  see :class:`llmrec.train.FrozenPrefix`), 512 windows, one epoch (64 steps),
  48 test users (10 beams) / 24 validation users (5 beams); LML runs log the
  gradient norms of L1 and L2 every 4 steps (Figure 3); the Books LML run that
  only Figures 3 and 8 use stops at 32 steps; every figure on 2 CPU cores.
* ``full``: the paper's protocol (10,000 windows, 10 epochs, batch 128 via
  accumulation, all test users, 10 beams) on a GPU.
"""

from __future__ import annotations

PROFILES = {
    "smoke": dict(dataset="synthetic", model="tiny", layers=None, lora_layers=None, n_train=64, epochs=1,
                  batch_size=8, max_steps=4, n_valid_users=0, valid_beams=4, lr=1e-3, max_history=5,
                  eval_users=8, valid_users=8, eval_beams=4, exact_users=2, sdpo_n_train=None,
                  grad_norm_every=1, side_steps=None),
    "quick": dict(dataset="toy", model="smollm2-135m", layers=None, lora_layers=4, n_train=512, epochs=1,
                  batch_size=8, max_steps=None, n_valid_users=0, valid_beams=5, lr=1e-3, max_history=5,
                  eval_users=48, valid_users=24, eval_beams=10, exact_users=4, sdpo_n_train=128,
                  grad_norm_every=4, side_steps=32),
    "full": dict(dataset="toy", model="smollm2-135m", layers=None, lora_layers=None, n_train=10_000, epochs=10,
                 batch_size=16, grad_accum=8, max_steps=None, n_valid_users=500, valid_beams=10, lr=1e-4,
                 max_history=10, eval_users=None, valid_users=None, eval_beams=10, exact_users=20,
                 sdpo_n_train=None, grad_norm_every=10, side_steps=None, dtype="bfloat16", device="cuda"),
}

# keys of the study, not of a TrainConfig: evaluation sizes (validation uses ``valid_beams``, which is also
# a TrainConfig key), S-DPO's windows, the LML runs' gradient-norm interval (Figure 3 reads the canonical
# LML run), and the steps of the LML runs on a second dataset that only the mechanism figures use
EVAL_KEYS = ("eval_users", "valid_users", "eval_beams", "exact_users", "sdpo_n_train", "grad_norm_every",
             "side_steps")


def profile(name: str) -> dict:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    return dict(PROFILES[name])


def train_config(name: str, **overrides) -> dict:
    """Training options of a profile with overrides (None values are ignored)."""
    sizes = profile(name)
    cfg = {k: v for k, v in sizes.items() if k not in EVAL_KEYS}
    cfg["validate"] = cfg["n_valid_users"] > 0
    if overrides.get("loss") == "lml":  # every LML run of a profile logs Figure 3's gradient norms
        cfg["log_grad_norms"] = sizes["grad_norm_every"]
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    cfg["profile"] = name
    return cfg

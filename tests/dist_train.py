"""Helper for test_distributed: one smoke MSL+ATS run, launched under torchrun or alone.

python tests/dist_train.py RUN_DIR BATCH_SIZE
"""

import sys

from llmrec.core.profiles import train_config
from llmrec.llm import train

if __name__ == "__main__":
    run_dir, batch_size = sys.argv[1], int(sys.argv[2])
    cfg = train_config("smoke", loss="msl-ats", validate=False, max_steps=6, n_train=96, batch_size=batch_size,
                       lora_dropout=0.0, ats_ema=0.5, lr=3e-3)
    train(cfg, run_dir=run_dir, progress=False)

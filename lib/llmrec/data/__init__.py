"""Data: windows and splits, the shipped datasets, the synthetic catalogue, raw Amazon preparation.

Every dataset is a catalogue (item id -> title) plus three frames of *windows*
(``user_id``, ``history``, ``target``, ``timestamp``); see :mod:`.dataset`. :mod:`.check` reads a dataset
folder and reports every problem of it (``llmrec check``).
"""

from .check import Problem, Report, check_folder, read_dataset_dir, read_items, read_windows
from .dataset import (SPLITS, DataError, Dataset, chronological_cut, chronological_split, make_windows, sample_windows,
                      save_dataset)
from .registry import DATASETS, DOMAINS, check_dataset, data_root, dataset_fingerprint, load_dataset

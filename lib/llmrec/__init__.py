"""llmrec: the library behind the llmrec-study notebooks, in layers (docs/architecture.md).

Lowest first: ``core`` (losses, metrics, samplers, profiles, the recommender
interface, run directories, files), ``data``, one package per model family
(``llm``, ``seqrec``), ``runs`` (train / load / evaluate any family), ``probes``
(statistics of trained runs), ``plots``, ``experiments`` (what the chapters
run), and ``widgets``, ``bench``, ``chapters`` (the papermill batch), ``cli``
on top. A lower layer never imports a higher one (``lint-imports``).
"""

__version__ = "0.1.0"

import warnings as _warnings

# transformers 5 deprecation raised from inside peft; nothing for a reader of the notebooks to act on
_warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

"""llmrec: the thin library behind the llmrec-study notebooks."""

__version__ = "0.1.0"

import warnings as _warnings

# transformers 5 deprecation raised from inside peft; nothing for a reader of the notebooks to act on
_warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

"""llmrec: the thin library behind the llmrec-study notebooks."""

__version__ = "0.1.0"

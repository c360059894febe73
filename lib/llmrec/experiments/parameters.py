"""What a chapter's parameters mean: its one ``dataset`` parameter and its size parameters."""

from __future__ import annotations

from ..core.profiles import dataset_for


def chapter_datasets(profile: str, dataset: str | None = None, own=("toy", "books")) -> list[str]:
    """The datasets a chapter runs on, from its one ``dataset`` parameter: None gives the chapter's own list
    (``own``: Toy, and Books where the chapter compares datasets); a name (``toy``, ``books``) or a prepared
    folder gives that dataset alone. Under ``smoke`` the synthetic catalogue stands in for Toy and Books
    (:func:`llmrec.core.profiles.dataset_for`); a folder stays itself."""
    return list(dict.fromkeys(dataset_for(profile, d) for d in ([dataset] if dataset else list(own))))


def size(name: str, value, default):
    """A chapter's size parameter: ``default`` when None, else a positive integer (an error names ``name``)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer (or None for {default}), got {value!r}")
    return value

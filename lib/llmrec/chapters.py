"""``make figures``: execute every chapter notebook in order with papermill.

Executed copies go to ``notebooks/executed/`` (git-ignored); the chapters write
their figures themselves (:func:`llmrec.plots.save_figure`): into the committed
``figures/`` for the canonical quick batch, under ``runs/figures/`` for any other.
A failing chapter is reported and the batch goes on; the exit status is
non-zero when any chapter failed. Trained runs are shared through the run
cache (``runs/``), so a chapter that needs a model another chapter trained
finds it there instead of training it again. Each executed copy records the library versions and the commit
that made it in its metadata (``metadata.llmrec.versions``, :func:`llmrec.core.provenance.versions`).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
import papermill as pm

from .core.io import repo_root, usable_cpus
from .core.profiles import PROFILES, dataset_for
from .core.provenance import versions
from .data import DATASETS, load_dataset

ROOT = repo_root()


def chapters(notebooks: Path | None = None, only: list[str] | None = None) -> list[Path]:
    """The numbered chapter notebooks (``NN_*.ipynb``), in order, optionally filtered by name prefix."""
    nb_dir = Path(notebooks or ROOT / "notebooks")
    found = sorted(p for p in nb_dir.glob("[0-9][0-9]_*.ipynb"))
    if only:
        found = [p for p in found if any(p.name.startswith(o) or p.stem == o for o in only)]
        if not found:
            raise ValueError(f"--only {only}: no chapter in {nb_dir} starts with that")
    return found


def run_batch(profile: str = "quick", device: str = "cpu", only: list[str] | None = None,
              notebooks: Path | None = None, out_dir: Path | None = None, kernel: str = "python3",
              publish: bool | None = None, dataset: str | None = None, cell_timeout: int | None = None) -> int:
    """Run the chapters; print the wall time of each and a summary; return 0 only if all succeeded.

    ``dataset`` (a name or a prepared folder) is every chapter's one ``dataset`` parameter; None leaves each
    chapter's own (Toy, with Books where it compares). A folder is checked first (:func:`llmrec.data.load_dataset`):
    one with a problem is a :class:`~llmrec.data.DataError` before any chapter starts. ``publish`` (default: only for the canonical ``quick``
    profile on the CPU, on the chapters' own datasets) writes the figures into the committed ``figures/``; any
    other batch writes them under ``runs/figures/`` (see :func:`llmrec.plots.figures_dir`). ``cell_timeout``
    (seconds): a cell that runs longer fails its chapter, naming the cell, instead of holding the batch.

    The kernels get ``OMP_NUM_THREADS`` = :func:`~llmrec.core.io.usable_cpus` unless it is set: torch would
    otherwise start one thread per host CPU, which under a container's CPU quota slows training many times over.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    if dataset:
        load_dataset(dataset_for(profile, dataset))
    if publish is None:
        publish = profile == "quick" and device == "cpu" and dataset is None
    if dataset and dataset not in DATASETS and Path(dataset).is_dir():
        dataset = str(Path(dataset).resolve())  # the chapters run in notebooks/
    parameters = dict(profile=profile, device=device, **({"dataset": str(dataset)} if dataset else {}))
    os.environ["LLMREC_PUBLISH_FIGURES"] = "1" if publish else "0"  # inherited by the chapters' kernels
    os.environ.setdefault("OMP_NUM_THREADS", str(usable_cpus()))
    out_dir = Path(out_dir or ROOT / "notebooks" / "executed")
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = chapters(notebooks, only)
    results = []
    t_all = time.perf_counter()
    for nb in todo:
        print(f"[figures] {nb.name} ({', '.join(f'{k}={v}' for k, v in parameters.items())}) ...", flush=True)
        t0 = time.perf_counter()
        err = None
        tmp = out_dir / f".{nb.stem}.partial.ipynb"
        try:
            pm.execute_notebook(str(nb), str(tmp), parameters=parameters,
                                kernel_name=kernel, cwd=str(nb.parent), progress_bar=False,
                                execution_timeout=cell_timeout)
            record_versions(tmp, kernel)
            os.replace(tmp, out_dir / nb.name)
        except Exception as e:  # report, keep going
            err = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
            if tmp.exists():
                record_versions(tmp, kernel)
                os.replace(tmp, out_dir / f"{nb.stem}.FAILED.ipynb")
        dt = time.perf_counter() - t0
        results.append((nb.name, dt, err))
        print(f"[figures] {nb.name}: {'ok' if err is None else 'FAILED'} in {dt:.1f} s"
              + (f"\n          {err}" if err else ""), flush=True)
    total = time.perf_counter() - t_all
    print("\n[figures] summary")
    for name, dt, err in results:
        print(f"  {'ok    ' if err is None else 'FAILED'} {dt:8.1f} s  {name}")
    print(f"  total  {total:8.1f} s  ({len(results)} chapters, profile={profile})")
    failed = [n for n, _, e in results if e]
    if failed:
        print(f"[figures] {len(failed)} chapter(s) failed: {', '.join(failed)}; "
              f"their executed copies are in {out_dir} (*.FAILED.ipynb)", file=sys.stderr)
        return 1
    return 0


def record_versions(path: Path, kernel: str) -> None:
    """Write the versions and commit that executed the notebook ``path`` into its metadata (``llmrec``): those of
    this process's environment, in which ``kernel`` runs (``make figures``: the venv's own ``python3``)."""
    book = nbformat.read(path, as_version=4)
    book.metadata["llmrec"] = {"versions": versions(), "kernel": kernel}
    nbformat.write(book, path)

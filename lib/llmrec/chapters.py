"""``make figures``: execute every chapter notebook in order with papermill.

The canonical batch (``quick`` on the CPU, the chapters' own datasets) writes its executed copies into the
committed ``notebooks/executed/`` (the book renders them; a code host shows them), any other batch under
``runs/executed/``; the chapters write their figures themselves (:func:`llmrec.plots.save_figure`): into the
committed ``figures/`` for the canonical batch, under ``runs/figures/`` for any other. Executed copies are cleaned
(:func:`clean_executed`): no progress-bar residue, no timestamps or machine paths, so that a re-run that changes no
result changes no byte but the commit and the chapter's seconds.
Every batch re-makes its chapters from the run cache alone (``retrain=True`` where a chapter declares it: the
committed quick runs that a chapter otherwise reads by default are not read); the canonical batch also
publishes each chapter's runs as results records without weights (``export_results=True``: ``results/quick/``),
the run cache that a chapter opened alone reads by default (:func:`llmrec.experiments.published.standalone`).
Before the batch and before each chapter it prints the chapter's estimated time (:func:`estimates`: the work each
chapter does at the profile, :mod:`llmrec.experiments.workload`, priced by the cost table ``bench/costs.json``),
and the summary puts each chapter's wall time beside its estimate.
A failing chapter is reported and the batch goes on; the exit status is
non-zero when any chapter failed. Trained runs are shared through the run
cache (``runs/``), so a chapter that needs a model another chapter trained
finds it there instead of training it again. Each executed copy records the library versions and the commit
that made it in its metadata (``metadata.llmrec.versions``, :func:`llmrec.core.provenance.versions`).
"""

from __future__ import annotations

import os
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import nbformat
import papermill as pm

from .core.io import repo_root, usable_cpus
from .core.profiles import PROFILES, dataset_for
from .core.profiles import profile as profile_sizes
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


BATCH = {"retrain": True}  # what every batch passes to the chapters that declare it: re-make, read nothing committed
CANONICAL = {"export_results": True}  # and the canonical batch: publish the runs (results/quick/)


def chapter_parameters(nb: Path, parameters: dict, extras: dict) -> dict:
    """``parameters`` and those of ``extras`` that the chapter ``nb`` declares in its parameters cell."""
    declared = pm.inspect_notebook(str(nb))
    return {**parameters, **{k: v for k, v in extras.items() if k in declared}}


def run_batch(profile: str = "quick", device: str = "cpu", only: list[str] | None = None,
              notebooks: Path | None = None, out_dir: Path | None = None, kernel: str = "python3",
              publish: bool | None = None, dataset: str | None = None, cell_timeout: int | None = None) -> int:
    """Run the chapters; print the wall time of each and a summary; return 0 only if all succeeded.

    ``dataset`` (a name or a prepared folder) is every chapter's one ``dataset`` parameter; None leaves each
    chapter's own (Toy, with Books where it compares). A folder is checked first (:func:`llmrec.data.load_dataset`):
    one with a problem is a :class:`~llmrec.data.DataError` before any chapter starts. ``publish`` (default: only for the canonical ``quick``
    profile on the CPU, on the chapters' own datasets) writes the figures into the committed ``figures/`` and the
    chapters' runs into ``results/quick/`` (:data:`CANONICAL`); any other batch writes its figures under
    ``runs/figures/`` (see :func:`llmrec.plots.figures_dir`) and publishes no run. Every batch retrains
    (:data:`BATCH`). ``cell_timeout``
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
    env = {"LLMREC_PUBLISH_FIGURES": "1" if publish else "0",  # inherited by the chapters' kernels
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS") or str(usable_cpus()),
           "TQDM_DISABLE": "1",  # no progress bars in the kernels (core.io.progress_bars; tqdm itself)
           "HF_HUB_DISABLE_PROGRESS_BARS": "1"}  # nor transformers' "Loading weights"
    out_dir = Path(out_dir or ROOT / ("notebooks" if publish else "runs") / "executed")
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = chapters(notebooks, only)
    planned = estimates([nb.name for nb in todo], profile, device, dataset)
    print(plan_line(planned, profile, device), flush=True)
    with kernel_environment(env):
        extras = {**BATCH, **(CANONICAL if publish else {})}
        results = _execute(todo, parameters, out_dir, kernel, cell_timeout, extras, planned)
    return _summary(results, profile, out_dir, planned)


def estimates(names: list[str], profile: str, device: str, dataset: str | None = None,
              costs: dict | None = None) -> dict:
    """Each chapter's estimated time, {notebook name: :func:`llmrec.experiments.workload.estimate` (its
    ``seconds`` None for a chapter the workload does not know)}; ``{"error": why}`` when there is no estimate
    (no cost table): the batch runs all the same."""
    from .experiments import workload

    try:
        costs = costs if costs is not None else workload.load_costs()
        known = [n for n in names if Path(n).stem in workload.CHAPTERS]
        work = workload.batch_workload(known, profile, dataset, device)
        history = profile_sizes(profile)["max_history"]
        out = {n: workload.estimate(work[n], costs, device, history) if n in work else {"seconds": None}
               for n in names}
    except (OSError, KeyError, ValueError) as e:
        return {"error": f"{type(e).__name__}: {e}"}
    entry = costs.get(workload.device_kind(device), costs.get("cpu", {}))
    return {"chapters": out, "source": entry.get("source", "?"), "when": entry.get("when")}


def _priced(e: dict) -> str:
    """One chapter's estimate as printed: ``6 min``, with the units priced by the CPU entry or not at all."""
    from .experiments.workload import duration

    if e.get("seconds") is None:
        return "no estimate"
    notes = ([f"{', '.join(e['fallback'])} at CPU cost"] if e.get("fallback") else []) + \
        ([f"{', '.join(e['missing'])} unpriced"] if e.get("missing") else [])
    return duration(e["seconds"]) + (f" ({'; '.join(notes)})" if notes else "")


def plan_line(planned: dict, profile: str, device: str) -> str:
    """The line printed before the batch: each chapter's estimate and the total, and where the costs come from."""
    from .experiments.workload import duration

    if "error" in planned:
        return f"[figures] no time estimate ({planned['error']})"
    parts = [f"{name[:2]} {duration(e['seconds'])}" for name, e in planned["chapters"].items()
             if e.get("seconds") is not None]
    total = sum(e["seconds"] for e in planned["chapters"].values() if e.get("seconds") is not None)
    when = f", {planned['when']}" if planned.get("when") else ""
    return (f"[figures] estimated time (profile={profile}, device={device}; costs: {planned['source']}{when}; "
            f"every run trained): {', '.join(parts)}; total {duration(total)}")


@contextmanager
def kernel_environment(env: dict[str, str]):
    """``env`` set in this process (papermill's kernels inherit it) while the batch runs, then restored."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _execute(todo: list[Path], common: dict, out_dir: Path, kernel: str, cell_timeout: int | None,
             extras: dict, planned: dict | None = None) -> list[tuple[str, float, str | None]]:
    """Execute each chapter into ``out_dir`` with the ``common`` parameters and those of ``extras`` it declares
    (with its estimated time from ``planned``); (name, seconds, error or None) for each."""
    results = []
    for nb in todo:
        parameters = chapter_parameters(nb, common, extras)
        estimate = (planned or {}).get("chapters", {}).get(nb.name)
        print(f"[figures] {nb.name} ({', '.join(f'{k}={v}' for k, v in parameters.items())}) ..."
              + (f" estimated {_priced(estimate)}" if estimate else ""), flush=True)
        t0 = time.perf_counter()
        err = None
        tmp = out_dir / f".{nb.stem}.partial.ipynb"
        try:
            pm.execute_notebook(str(nb), str(tmp), parameters=parameters,
                                kernel_name=kernel, cwd=str(nb.parent), progress_bar=False,
                                execution_timeout=cell_timeout)
            record_versions(tmp, kernel, time.perf_counter() - t0)
            os.replace(tmp, out_dir / nb.name)
        except Exception as e:  # report, keep going
            err = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
            if tmp.exists():
                record_versions(tmp, kernel, time.perf_counter() - t0)
                os.replace(tmp, out_dir / f"{nb.stem}.FAILED.ipynb")
        dt = time.perf_counter() - t0
        results.append((nb.name, dt, err))
        print(f"[figures] {nb.name}: {'ok' if err is None else 'FAILED'} in {dt:.1f} s"
              + (f"\n          {err}" if err else ""), flush=True)
    return results


def _summary(results: list[tuple[str, float, str | None]], profile: str, out_dir: Path,
             planned: dict | None = None) -> int:
    """Print the batch's summary (each chapter's wall time beside its estimate); 0 only if every chapter
    succeeded."""
    from .experiments.workload import duration

    total = sum(dt for _, dt, _ in results)
    est = {n: e.get("seconds") for n, e in (planned or {}).get("chapters", {}).items()}
    print("\n[figures] summary")
    for name, dt, err in results:
        guess = f"  (estimated {duration(est[name])})" if est.get(name) is not None else ""
        print(f"  {'ok    ' if err is None else 'FAILED'} {dt:8.1f} s  {name}{guess}")
    print(f"  total  {total:8.1f} s  ({len(results)} chapters, profile={profile})")
    failed = [n for n, _, e in results if e]
    if failed:
        print(f"[figures] {len(failed)} chapter(s) failed: {', '.join(failed)}; "
              f"their executed copies are in {out_dir} (*.FAILED.ipynb)", file=sys.stderr)
        return 1
    return 0


def record_versions(path: Path, kernel: str, seconds: float | None = None) -> None:
    """Clean the executed notebook ``path`` (:func:`clean_executed`) and write into its metadata (``llmrec``) the
    versions and commit that executed it (those of this process's environment, in which ``kernel`` runs; ``make
    figures``: the venv's own ``python3``), the chapter's wall seconds and, for its cells that took 5 s or more,
    each one's seconds by cell index (``cell seconds``: where a chapter's time goes, read by
    ``bench/figures_scratch.py``)."""
    book = nbformat.read(path, as_version=4)
    took = {str(i): (c.metadata.get("papermill") or {}).get("duration") or 0 for i, c in enumerate(book.cells)}
    slow = {i: round(d, 1) for i, d in took.items() if d >= 5}
    book = clean_executed(book)
    book.metadata["llmrec"] = {"versions": versions(), "kernel": kernel,
                               **({"seconds": round(seconds, 1)} if seconds is not None else {}),
                               **({"cell seconds": slow} if slow else {})}
    nbformat.write(book, path)


_PROGRESS = re.compile(r"\d+%\||\d+/\d+ \[[\d:<?]+|Loading weights")


def _is_progress(output: dict) -> bool:
    """A progress bar's residue: a stderr stream, or a widget view whose text is a tqdm line."""
    if output.get("output_type") == "stream":
        return output.get("name") == "stderr" and bool(_PROGRESS.search(output.get("text", "")))
    text = output.get("data", {}).get("text/plain", "")
    text = "".join(text) if isinstance(text, list) else text
    return "application/vnd.jupyter.widget-view+json" in output.get("data", {}) and bool(_PROGRESS.search(text))


# a Markdown link out of ``notebooks/`` (``](../docs/...)``) not yet rebased for the folder one level down
_OUT_OF_NOTEBOOKS = re.compile(r"\]\(\.\./(?!\.\./)")


def clean_executed(book: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """An executed notebook as the book and a code host should show it: progress-bar outputs removed, and the
    volatile metadata (per-cell timestamps and durations, papermill's times and absolute paths) stripped. The
    parameters papermill injected are kept, and an error stays in the cell that raised it. The copy lies one
    folder below its source (``notebooks/executed/``), so a Markdown link out of ``notebooks/`` gains one ``../``
    (once: cleaning a clean copy changes nothing); links between chapters stay, and lead to the executed copies."""
    for cell in book.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "markdown":
            cell.source = _OUT_OF_NOTEBOOKS.sub("](../../", cell.source)
        pm_meta = cell.metadata.get("papermill")
        if pm_meta is not None:
            cell.metadata["papermill"] = {k: v for k, v in pm_meta.items() if k in ("exception", "status")}
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not _is_progress(o)]
    meta = book.metadata.get("papermill")
    if meta is not None:
        book.metadata["papermill"] = {k: v for k, v in meta.items()
                                      if k not in ("start_time", "end_time", "duration", "input_path", "output_path")}
    return book

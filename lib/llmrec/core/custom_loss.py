"""A loss function of your own: how every training entry point takes one, and how it enters the run's key.

Every training entry point (:func:`llmrec.runs.train`, :func:`llmrec.llm.training.train`,
:func:`llmrec.seqrec.training.train`, :func:`llmrec.lite.training.train`, :func:`llmrec.itemseq.loop.fit`) takes
``loss_fn=``, as Hugging Face's ``Trainer`` takes ``compute_loss_func``: a function called where the built-in
losses are computed, in place of the configuration's ``loss``, that returns the batch's loss as one number (a
0-dim tensor, e.g. a mean over positions). Its arguments:

* the LLM (:class:`llmrec.llm.objectives.LossComputer`): ``loss_fn(logits, valid, targets)``, the dense teaching
  form of :func:`llmrec.core.losses.msl_loss_dense`: ``logits`` (N, |V|) float32, every response position's
  logits over the whole vocabulary; ``valid`` (N, |V|) bool, the trie's valid next tokens Z_valid(y_<t) of each
  position; ``targets`` (N,) the token y_t each position must predict (always valid, never padding);
* the item-sequence models, SASRec & co and Lite-LLM4Rec (:func:`llmrec.itemseq.objectives.batch_loss`):
  ``loss_fn(scores, targets)``: ``scores`` (P, |I|), every item's score at each of the batch's P labelled
  positions (column i is item i + 1), ``targets`` (P,) the column of each position's next item.

The run's configuration names the loss ``custom:<name>`` (the function's name: tables and the run folder show
it) and holds ``loss_source``, the function's fingerprint: a hash of its source (``inspect.getsource``,
dedented), its default arguments and every global or closure variable it reads (a number, a string, a tensor by
value; a function or class defined in the same module, the notebook or the file, by its own source; a module,
and a function or class imported from elsewhere, by name). The fingerprint is part of the run cache's key: an
edited function, or a constant it reads set to another value, is a new run that never reuses an old one, and
the same function finds its run again (finished: reused; interrupted: resumed). The run folder keeps the source
in ``loss_fn.py``.

A function whose source cannot be read (a lambda typed at a Python prompt, a builtin, a ``functools.partial``, a
callable object) is refused with an error that says to define it with ``def`` in a file or a notebook cell, or
to version it yourself: ``loss_fn=CustomLoss(fn, name="mine", version="1")`` puts the version in the key in
place of the source (change it whenever you change the function).
"""

from __future__ import annotations

import dis
import hashlib
import inspect
import json
import numbers
import re
import textwrap
import types
from dataclasses import dataclass, is_dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from .io import atomic_write

if TYPE_CHECKING:
    import torch

PREFIX = "custom:"  # a configuration's loss "custom:<name>": trained with a function of the user's
SOURCE_FILE = "loss_fn.py"  # in the run directory: the function's source, and what it reads
NAME = re.compile(r"[\w.-]+")  # a custom loss's name: it names the run folder and the tables' rows


class LossSourceError(ValueError):
    """A loss function whose fingerprint cannot be taken (unreadable source, or a value it reads that no
    fingerprint holds)."""


def is_custom(loss) -> bool:
    """Whether a configuration's ``loss`` names a function of the user's (``custom:<name>``)."""
    return isinstance(loss, str) and loss.startswith(PREFIX)


@dataclass(frozen=True)
class CustomLoss:
    """A loss function with its ``name`` (default: the function's ``__name__``) and, optionally, a ``version``
    that stands for its source in the run's key (you then change it whenever you change the function)."""

    fn: Callable
    name: str | None = None
    version: str | None = None

    def __post_init__(self):
        if not callable(self.fn):
            raise TypeError(f"loss_fn must be a function, got {self.fn!r}")
        name = self.name if self.name is not None else getattr(self.fn, "__name__", None)
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ValueError(f"the loss function {self.fn!r} needs a name of letters, digits, '_', '.' or '-' (it "
                             f"names the run folder and the tables), not {name!r}: define it with `def` in a file or "
                             f"a notebook cell, or give CustomLoss(fn, name=\"...\", version=\"1\") (the version "
                             f"stands for a source that cannot be read: change it whenever you change the function)")
        if self.version is not None and (not isinstance(self.version, str) or not self.version.strip()):
            raise ValueError(f"CustomLoss version must be a non-empty string, got {self.version!r}")
        object.__setattr__(self, "name", name)

    @property
    def label(self) -> str:
        """The configuration's ``loss``: ``custom:<name>``."""
        return PREFIX + self.name

    def fingerprint(self) -> str:
        """The configuration's ``loss_source``: ``version:<version>`` when versioned, else a hash of
        :func:`describe`."""
        if self.version is not None:
            return f"version:{self.version}"
        blob = json.dumps(describe(self.fn, self.label), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def __call__(self, *args) -> torch.Tensor:
        """The loss of a batch, checked: one floating-point number that, while training, has a gradient."""
        import torch  # on use: `llmrec check` and `--help` start without torch
        out = self.fn(*args)
        if not (torch.is_tensor(out) and out.ndim == 0 and out.is_floating_point()):
            what = f"a tensor of shape {tuple(out.shape)}" if torch.is_tensor(out) else repr(type(out).__name__)
            raise TypeError(f"the loss function {self.label} returned {what}; it must return the batch's loss as "
                            f"one number, a 0-dim floating-point tensor (e.g. the mean over positions)")
        if torch.is_grad_enabled() and not out.requires_grad:
            raise ValueError(f"the loss function {self.label} returned a loss without a gradient: compute it from "
                             f"its arguments with torch operations (no .item(), .numpy() or .detach())")
        return out


def as_custom(loss_fn) -> CustomLoss:
    return loss_fn if isinstance(loss_fn, CustomLoss) else CustomLoss(loss_fn)


def configure(config, loss_fn):
    """``(config, custom)``: ``config`` (a dict or a :class:`~llmrec.core.config.RunConfig`) set to train with
    ``loss_fn`` (a function or a :class:`CustomLoss`): its ``loss`` ``custom:<name>``, its ``loss_source`` the
    function's fingerprint; and the :class:`CustomLoss` to call (None without ``loss_fn``).

    ``loss_fn`` replaces the configuration's loss whatever it was (the configuration of a built-in run, or of an
    older version of the same function). Without ``loss_fn`` the configuration is returned as it is, and one
    that names a custom loss is refused: training it needs its function.
    """
    loss = config.get("loss") if isinstance(config, dict) else getattr(config, "loss", None)
    if loss_fn is None:
        if is_custom(loss):
            raise ValueError(f"this configuration trains with {loss!r}, a loss function of your own: pass that "
                             f"function as loss_fn= (its fingerprint is part of the run's key)")
        return config, None
    custom = as_custom(loss_fn)
    update = {"loss": custom.label, "loss_source": custom.fingerprint()}
    return (replace(config, **update) if is_dataclass(config) else {**config, **update}), custom


def check(loss, loss_source) -> None:
    """A configuration's ``loss`` and ``loss_source`` agree: a custom loss has a well-formed name and a
    fingerprint, a built-in one none."""
    if is_custom(loss):
        if not NAME.fullmatch(loss[len(PREFIX):]):
            raise ValueError(f"loss {loss!r}: a custom loss is 'custom:<name>', the name of letters, digits, '_', "
                             f"'.' or '-'")
        if not isinstance(loss_source, str) or not loss_source:
            raise ValueError(f"loss {loss!r} needs loss_source, the fingerprint of its function: pass the function "
                             f"as loss_fn= to the training entry point, which sets both")
    elif loss_source is not None:
        raise ValueError(f"loss_source {loss_source!r} is the fingerprint of a custom loss, but the loss is {loss!r}")


def record(run_dir: str | Path, custom: CustomLoss | None) -> None:
    """Write the function's source and what it reads to ``loss_fn.py`` in the run directory (nothing without a
    custom loss): the run says what it trained with."""
    if custom is None:
        return
    head = f"# The loss function of this run: {custom.label}, loss_source {custom.fingerprint()}\n"
    try:
        body = _source_text(describe(custom.fn, custom.label))
    except LossSourceError:  # a versioned function may have no readable source
        body = f"# its source cannot be read: {custom.fn!r}, versioned by hand\n"
    atomic_write(Path(run_dir) / SOURCE_FILE, (head + "\n" + body).encode())


# ----------------------------------------------------------------------------- the fingerprint


def describe(fn, label: str = "") -> dict:
    """What the fingerprint of ``fn`` is made of: its dedented source, its default arguments, and each global or
    closure variable it reads (:func:`_value`)."""
    return _describe(fn, label or getattr(fn, "__name__", repr(fn)), set())


def _unreadable(label: str, why: str) -> LossSourceError:
    return LossSourceError(
        f"cannot fingerprint the loss function {label}: {why}. A run's key holds its loss function's source, so "
        f"that an edited loss never reuses an old run: define it with `def` in a file or a notebook cell, or "
        f"version it yourself: loss_fn=CustomLoss(fn, name=\"...\", version=\"1\") (and change the version "
        f"whenever you change the function)")


def _describe(fn, label: str, seen: set) -> dict:
    if not isinstance(fn, types.FunctionType):
        raise _unreadable(label, f"{fn!r} is a {type(fn).__name__}, not a function defined with `def`")
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError) as e:
        raise _unreadable(label, f"its source cannot be read ({e})") from None
    seen.add(fn)
    code, home = fn.__code__, fn.__module__
    reads = {name: _value(fn.__globals__[name], name, label, home, seen)
             for name in sorted(_global_names(code)) if name in fn.__globals__}  # the others are builtins
    for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell: a variable of the enclosing function not assigned yet
            continue
        reads[name] = _value(value, name, label, home, seen)
    return {"source": source, "reads": reads,
            "defaults": [_value(v, "a default argument", label, home, seen) for v in fn.__defaults__ or ()],
            "kwdefaults": {k: _value(v, k, label, home, seen) for k, v in (fn.__kwdefaults__ or {}).items()}}


def _global_names(code: types.CodeType) -> set[str]:
    """The global names a code object (and the code nested in it: comprehensions, lambdas) loads: not the
    attribute names (``x.sum``) that ``co_names`` also lists."""
    names = {i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _value(value, name: str, label: str, home: str, seen: set):
    """How a value the function reads enters its fingerprint: plain values as themselves, tensors and arrays
    by content, functions and classes of the function's own module by their source, modules and anything
    else callable from elsewhere by name; other values are refused (the fingerprint could not follow them)."""
    import torch  # on use: `llmrec check` and `--help` start without torch
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Number):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return [_value(v, name, label, home, seen) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _value(v, name, label, home, seen) for k, v in value.items()}
    if isinstance(value, (torch.dtype, torch.device)):
        return repr(value)
    if torch.is_tensor(value) or isinstance(value, np.ndarray):
        a = value.detach().cpu().numpy() if torch.is_tensor(value) else value
        return {"array": hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest(),
                "dtype": str(value.dtype), "shape": list(a.shape)}
    if isinstance(value, types.ModuleType):
        return f"module {value.__name__}"
    if getattr(value, "__module__", None) == home and isinstance(value, types.FunctionType):
        return f"function {value.__qualname__}" if value in seen else {"function": _describe(value, label, seen)}
    if getattr(value, "__module__", None) == home and inspect.isclass(value):
        try:
            return {"class": textwrap.dedent(inspect.getsource(value))}
        except (OSError, TypeError) as e:
            raise _unreadable(label, f"it uses the class {name}, whose source cannot be read ({e})") from None
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', None)}.{value.__qualname__}"
    raise _unreadable(label, f"it reads {name!r}, a {type(value).__name__}, whose value a fingerprint cannot "
                             f"follow (it holds numbers, strings, tensors, arrays, functions, classes and modules); "
                             f"make it a constant inside the function")


def _source_text(desc: dict) -> str:
    """The sources of a :func:`describe` (the function's, then its helpers'), and the values it reads."""
    out, values = [desc["source"]], []
    for name, v in desc["reads"].items():
        if isinstance(v, dict) and "function" in v:
            out.append(_source_text(v["function"]))
        elif isinstance(v, dict) and "class" in v:
            out.append(v["class"])
        else:
            values.append(f"#   {name} = {json.dumps(v)}")
    if values:
        out.append("# it reads:\n" + "\n".join(values) + "\n")
    return "\n\n".join(s.rstrip("\n") for s in out) + "\n"

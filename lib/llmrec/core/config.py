"""The one configuration style of every model family: a dataclass of the options that change a run's result.

A family's configuration subclasses :class:`RunConfig`: its fields are the options with their defaults, and
four class-level tables say how the options are checked and stored:

* ``CHOICES``: the allowed values of an option (an error names the option and the choices);
* ``POSITIVE``: options that must be positive integers (``None`` allowed for those of ``NULLABLE``, by default
  the options whose default is ``None``);
* ``KEY_IF_CHANGED``: options added after runs were cached; at their default they stay out of ``config.json``,
  so the keys of the runs made before them do not change (``KEY_IF_SET``: the same for options whose default
  is ``None``);
* ``RUN_OPTIONS``: how a run is carried out, never what it computes (resuming is exact): never stored, never
  part of the key.

Every family's ``loss`` may also be ``custom:<name>``, a loss function of the user's, with ``loss_source`` its
fingerprint (:mod:`llmrec.core.custom_loss`: the training entry points set both from ``loss_fn=``);
``loss_source`` is stored only for such a loss, so the keys of the other runs do not change.

``to_dict()`` is what ``config.json`` holds and the run cache hashes (:func:`llmrec.core.rundir.run_dir_for`),
in plain JSON types; ``from_dict`` refuses unknown keys.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import ClassVar

from . import custom_loss


@dataclass
class RunConfig:
    family: str = ""
    profile: str = "custom"
    loss_source: str | None = None  # the fingerprint of a custom loss's function (custom_loss.CustomLoss)

    LABEL: ClassVar[str] = "run"  # how errors name this configuration ("unknown <label> option(s)")
    CHOICES: ClassVar[dict] = {}
    POSITIVE: ClassVar[tuple] = ()
    NULLABLE: ClassVar[tuple | None] = None
    KEY_IF_CHANGED: ClassVar[tuple] = ()
    KEY_IF_SET: ClassVar[tuple] = ()
    RUN_OPTIONS: ClassVar[tuple] = ()

    def __post_init__(self):
        for name, allowed in self.CHOICES.items():
            if name == "loss" and custom_loss.is_custom(self.loss):
                continue
            if getattr(self, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}: {name} must be one of {tuple(allowed)}")
        nullable = self.NULLABLE if self.NULLABLE is not None else \
            tuple(f.name for f in fields(self) if f.default is None)
        for name in self.POSITIVE:
            value = getattr(self, name)
            if value is None and name in nullable:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer{' or None' if name in nullable else ''}, "
                                 f"got {value!r}")
        custom_loss.check(getattr(self, "loss", None), self.loss_source)
        self.check()

    def check(self) -> None:
        """The family's own checks (beyond ``CHOICES`` and ``POSITIVE``); raise ValueError naming the option."""

    @classmethod
    def from_dict(cls, d: dict):
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.LABEL} option(s) {sorted(unknown)}; "
                             f"known: {sorted(f.name for f in fields(cls))}")
        return cls(**d)

    def to_dict(self) -> dict:
        """The options that decide the run's result (``config.json``, the run cache's key), in plain JSON types:
        all but ``RUN_OPTIONS``, ``KEY_IF_SET`` (and ``loss_source``) at None and ``KEY_IF_CHANGED`` at their
        default."""
        defaults = {f.name: f.default for f in fields(self)}
        if_set = (*self.KEY_IF_SET, "loss_source")
        out = {k: v for k, v in asdict(self).items()
               if k not in self.RUN_OPTIONS and not (k in if_set and v is None)
               and not (k in self.KEY_IF_CHANGED and v == defaults[k])}
        return json.loads(json.dumps(out))

    @classmethod
    def complete(cls, config: dict) -> dict:
        """``config`` over the defaults, checked, as stored in ``config.json``."""
        return cls.from_dict(config).to_dict()

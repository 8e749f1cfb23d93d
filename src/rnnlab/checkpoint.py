"""Checkpoints of a run, written with orbax-checkpoint into ``RUN_DIR/checkpoints/STEP/``.

A checkpoint holds everything a run needs to continue as if it had never stopped:

* ``state``: the per-seed training state (``TrainState``: step, parameters, optimizer state, the
  training and evaluation RNG keys, which are also the synthetic tasks' data streams), vmapped
  over seeds, and with early stopping each seed's best state so far;
* ``host``: JSON with the host loop's state (alive flags, divergence records, early-stopping
  counters, the step), the loggers' positions (byte offsets of ``metrics.jsonl`` and
  ``events.jsonl``, the W&B run id), the resolved config and the layout version
  :data:`LAYOUT`.

orbax writes each checkpoint into a temporary folder and renames it when complete, so a
checkpoint is either whole or absent; the last ``keep`` are kept. After orbax commits, a
``manifest.json`` of every file's size and SHA-256 is added, and checked before a restore. A
checkpoint that cannot be read (unfinished, a truncated or changed file, another config,
another layout) raises :class:`CheckpointError` naming its folder or file;
:meth:`Checkpoints.restore_latest` then falls back to the one before it.

RNG keys are stored as their raw ``uint32`` data (``jax.random.key_data``) and wrapped again on
restore.
"""

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np

LAYOUT = 3  # bump when what a checkpoint holds changes; older layouts are refused by name
# 2: TrainState.hparams (a member's optimizer values) and clipping always in the optimizer chain
# 3: TrainState.hparams also holds the dropout rate of a model with dropout; a layout-2
#    checkpoint is the same for a model without dropout, and is read for one
FOLDER = "checkpoints"
MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be restored; the message names its folder and why."""


def to_saveable(tree):
    """Typed PRNG key arrays replaced by their ``uint32`` key data."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def from_saveable(tree, like):
    """Undoes :func:`to_saveable`, with ``like`` (the live tree or its shapes) saying which
    leaves are keys."""
    return jax.tree.map(lambda x, ref: jax.random.wrap_key_data(x) if _is_key(ref) else x,
                        tree, like)


def _holds_dropout_rate(like: dict[str, Any]) -> bool:
    """Whether a state in ``like`` carries a dropout rate in ``hparams`` (layout 3 only)."""
    from rnnlab.train import DROPOUT

    return any(isinstance(getattr(tree, "hparams", None), dict) and DROPOUT in tree.hparams
               for tree in like.values())


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


class Checkpoints:
    """The checkpoints of one run folder."""

    def __init__(self, run_dir: str | Path, keep: int = 2):
        import orbax.checkpoint as ocp

        self.dir = Path(run_dir).resolve() / FOLDER
        self.skipped: list[dict[str, Any]] = []  # what the last restore_latest fell back over
        self._ocp = ocp
        self._manager = ocp.CheckpointManager(
            self.dir, options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, enable_async_checkpointing=False, create=True))

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, trees: dict[str, Any], host: dict[str, Any]) -> None:
        """Writes the checkpoint of ``step``, replacing one already there: a run resumed from
        an earlier checkpoint (the one at ``step`` unfinished, or damaged) writes it again."""
        ocp = self._ocp
        if int(step) in self._manager.all_steps():
            self._manager.delete(int(step))
        args = {name: ocp.args.StandardSave(to_saveable(tree)) for name, tree in trees.items()}
        args["host"] = ocp.args.JsonSave({**host, "layout": LAYOUT, "step": int(step)})
        self._manager.save(int(step), args=ocp.args.Composite(**args), force=True)
        self._manager.wait_until_finished()
        self._write_manifest(int(step))

    # A manifest of every file's size and SHA-256, written (atomically) once orbax has
    # committed the checkpoint: a checkpoint without one was not finished, and a file that
    # does not match it was truncated or changed. Checked before orbax reads anything.
    def _files(self, step: int) -> list[Path]:
        root = self.dir / str(step)
        return sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)

    def _write_manifest(self, step: int) -> None:
        root = self.dir / str(step)
        entries = {str(p.relative_to(root)): {"size": p.stat().st_size, "sha256": _sha256(p)}
                   for p in self._files(step)}
        tmp = root / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(entries, indent=1))
        os.replace(tmp, root / MANIFEST)

    def verify(self, step: int) -> None:
        """Raises :class:`CheckpointError` naming the first missing, truncated or changed
        file of the checkpoint at ``step``, or the missing manifest of an unfinished one."""
        root = self.dir / str(step)
        manifest = root / MANIFEST
        if not manifest.exists():
            raise CheckpointError(f"checkpoint {root} was not finished (no {MANIFEST})")
        entries = json.loads(manifest.read_text())
        for rel, entry in entries.items():
            path = root / rel
            if not path.exists():
                raise CheckpointError(f"checkpoint {root}: file {path} is missing")
            if path.stat().st_size != entry["size"] or _sha256(path) != entry["sha256"]:
                raise CheckpointError(f"checkpoint {root}: file {path} is truncated or changed "
                                      f"({path.stat().st_size} bytes, written with "
                                      f"{entry['size']})")

    def restore(self, step: int, like: dict[str, Any]) -> tuple[dict[str, Any], dict]:
        """The trees (shaped like ``like``) and the host JSON of the checkpoint at ``step``.

        Raises:
          CheckpointError: the checkpoint is unreadable, of another layout, or its arrays do
            not have the shapes of this config's."""
        ocp = self._ocp
        where = self.dir / str(step)
        self.verify(step)
        try:
            host = self._manager.restore(step, args=ocp.args.Composite(
                host=ocp.args.JsonRestore()))["host"]
        except Exception as err:
            raise CheckpointError(f"checkpoint {where} cannot be read: {err}") from err
        if host.get("layout") != LAYOUT and not (host.get("layout") == 2
                                                 and not _holds_dropout_rate(like)):
            raise CheckpointError(
                f"checkpoint {where} has layout {host.get('layout')!r}, written by another "
                f"rnnlab version; this version reads layout {LAYOUT}. Start afresh in a new "
                f"folder, or with train.resume=false in this one")
        saveable = {name: jax.eval_shape(to_saveable, tree) for name, tree in like.items()}
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(
                **{name: ocp.args.StandardRestore(t) for name, t in saveable.items()}))
        except Exception as err:
            first = str(err).strip().splitlines()[0][:160] if str(err).strip() else ""
            raise CheckpointError(f"checkpoint {where} cannot be restored into this run's "
                                  f"state (written by another config?): "
                                  f"{type(err).__name__}: {first}") from err
        for name, tree in saveable.items():
            got = jax.tree.map(lambda x: (tuple(np.shape(x)), str(x.dtype)), restored[name])
            want = jax.tree.map(lambda x: (tuple(x.shape), str(x.dtype)), tree)
            if got != want:
                raise CheckpointError(f"checkpoint {where}: '{name}' has other shapes than "
                                      f"this run's (written by another config)")
        trees = {name: from_saveable(restored[name], like[name]) for name in like}
        return trees, host

    def restore_latest(self, like: dict[str, Any]):
        """``(step, trees, host)`` of the newest checkpoint that restores, falling back to
        older ones with a warning naming each unreadable one; ``None`` when there is none.
        The ones it fell back over are left in :attr:`skipped` (``{"step", "error"}`` each),
        for the run's ``resumed`` event.

        Raises:
          CheckpointError: checkpoints exist but none can be restored (the messages of all)."""
        errors = []
        self.skipped = []
        for step in reversed(self.steps()):
            try:
                trees, host = self.restore(step, like)
            except CheckpointError as err:
                errors.append(str(err))
                self.skipped.append({"step": int(step), "error": str(err)})
                print(f"[rnnlab] warning: {err}; trying the checkpoint before it",
                      file=sys.stderr)
                continue
            return step, trees, host
        if errors:
            raise CheckpointError("no checkpoint of this run folder can be restored: "
                                  + " | ".join(errors))
        return None

    def close(self) -> None:
        self._manager.close()

"""One site of a cross-silo run (``federated.sites``): the only code that reads a site's file.

A :class:`Site` is what runs on a site's node (a Flower SuperNode in a deployment; in-process in a simulation).
It loads and validates its own file, splits its own train/validation/test rows (seeded), encodes them with the
DECLARED schema only (:mod:`tfresp.federated.schema`: nothing is fitted on rows), and offers two calls:

* :meth:`Site.fit` ``(weights, round) -> (weights, rows or None)``: local training from the global weights. With
  ``privacy:`` the site trains with its own :class:`~tfresp.privacy.dpsgd.DPSGD` object (its own secret Poisson
  sampler over its own training rows, its own noise counter and ledger, composing over every round's local steps;
  σ calibrated so its ε over the planned rounds meets ``privacy.target_epsilon``); it then returns ``None`` for
  the row count (the server averages the sites with equal weights).
* :meth:`Site.evaluate` ``(weights, split) -> counts``: the global model on the site's own held-out validation or
  test rows, as counts only (label x prediction cells, per sensitive group) and the summed loss.

The server side (:mod:`tfresp.federated.sites_run`) knows sites by name only; it never opens a source.

Example:
    >>> site = Site("north", "/data/north.csv", config)
    >>> weights, n = site.fit(global_weights, 1)
    >>> site.evaluate(weights, "test")["confusion"]
"""
from __future__ import annotations

import zlib
from typing import Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from tfresp.errors import DataError
from tfresp.federated import schema

#: sensitive-group cells are counted for binary tasks: [label][decision] with the positive class at index 1
SPLITS = ("validation", "test")


def site_seed(config, name: str) -> int:
    """The site's public seed (split, non-DP shuffles): the run seed mixed with the site's name."""
    return (int(config.seed) * 1_000_003 + zlib.crc32(name.encode("utf-8"))) % (2 ** 31 - 1)


class Site:
    """A site: its file, its splits, its local model and (under ``privacy:``) its DP-SGD mechanism.

    Args:
        name: the site's name (``federated.sites[].name``).
        source: the site's file (CSV / Parquet / JSONL); read here and nowhere else.
        config: the run's :class:`~tfresp.config.RunConfig` (data schema, model, ``federated``, ``privacy``).
    """

    def __init__(self, name: str, source: str, config):
        self.name, self.config = name, config
        self.field = f"federated.sites.{name}.source"
        self.seed = site_seed(config, name)
        self.pre = schema.preprocessor(config)
        self.classes = schema.classes(config)
        frame = self._load(source)
        self._encode(frame)
        self.core = None
        self.model = None
        self.dp = None
        self.rounds_fit = 0
        if config.privacy is not None:
            self._model()  # the DP-SGD mechanism (σ, budget cap) is checked before any round

    # -- data ---------------------------------------------------------------------------------------
    def _load(self, source: str) -> pd.DataFrame:
        """Read and validate the site's file (the only place a site's rows are read)."""
        from tfresp.data.sources import load_file

        dc = self.config.data
        frames, info = load_file(source, dc.format, field=self.field, delimiter=dc.delimiter, encoding=dc.encoding)
        self.info = {"name": info.get("name"), "kind": info.get("kind")}
        df = frames["train"]
        df.columns = [str(c) for c in df.columns]
        self._check(df)
        return df

    def _check(self, df: pd.DataFrame) -> None:
        """Every problem of the file in one :class:`DataError`: missing or undeclared columns, values outside the
        declared categories or classes, non-numeric or missing values."""
        dc = self.config.data
        features = schema.feature_columns(self.config)
        problems = []
        needed = features + [dc.label] + [a for a in dc.sensitive if a not in features]
        missing = [c for c in needed if c not in df.columns]
        if missing:
            problems.append(f"columns {missing} are missing from the file")
        if dc.features is None:
            known = set(needed) | set(schema.declared_columns(self.config))
            undeclared = [c for c in df.columns if c not in known]
            if undeclared:
                problems.append(f"columns {undeclared[:30]} have no declared values. Remedy: declare them in "
                                "data.categories / data.numeric_ranges, or list the features to use in "
                                "data.features")
        cats = dc.categories or {}
        for c in [f for f in features if f in cats and f in df.columns] + ([dc.label] if dc.label in df.columns
                                                                             else []):
            allowed = {str(v) for v in cats.get(c, [])}
            unknown = sorted(set(df[c].astype(str)) - allowed)
            if unknown:
                problems.append(f"column {c!r} has values {unknown[:10]} not declared in data.categories.{c}")
        for c in [f for f in features if f in (dc.numeric_ranges or {}) and f in df.columns]:
            v = pd.to_numeric(df[c], errors="coerce")
            if v.isna().any():
                problems.append(f"numeric column {c!r} has missing or non-numeric values")
            else:
                df[c] = v.astype("float64")
        for c in [f for f in features if f in cats and f in df.columns] + [a for a in dc.sensitive
                                                                            if a in df.columns]:
            if df[c].isna().any():
                problems.append(f"column {c!r} has missing values (declare a '<missing>' category and write it)")
        if problems:
            raise DataError(f"`{self.field}`: site {self.name!r}: " + " | ".join(problems)
                            + ". Remedy: fix the site's file or the declared schema")

    def _encode(self, df: pd.DataFrame) -> None:
        from tfresp.data import split as splitting
        from tfresp.data.bundle import Split

        dc = self.config.data
        test = dc.split.test if not isinstance(dc.split.test, str) else "official"
        parts = splitting.split_frames({"train": df}, dc.label, test, dc.split.validation, dc.max_rows, self.seed)
        index = {c: i for i, c in enumerate(self.classes)}

        def make(frame):
            if frame is None or len(frame) == 0:
                return None
            return Split(x=self.pre.transform_frame(frame), y=frame[dc.label].astype(str).map(index).to_numpy(np.int64),
                         frame=frame[[a for a in dc.sensitive]].reset_index(drop=True),
                         groups={a: frame[a].astype(str).to_numpy() for a in dc.sensitive})

        self.train, self.validation, self.test = make(parts.train), make(parts.validation), make(parts.test)
        if self.train is None or len(self.train) < 2:
            raise DataError(f"`{self.field}`: site {self.name!r} has fewer than 2 training rows after its "
                            "validation/test split. Remedy: give the site more rows")

    # -- training -----------------------------------------------------------------------------------
    def _model(self):
        """The site's local model (built once from the declared schema) and, under ``privacy:``, its DP-SGD."""
        if self.model is not None:
            return self.model
        import tf_keras as keras

        from tfresp.models.base import ResponsibleModel

        cfg, fed = self.config, self.config.federated
        self.core = schema.build_core(cfg, self.pre)
        model = ResponsibleModel(self.core)
        pc = cfg.privacy
        if pc is not None:
            from tfresp.privacy.dpsgd import DPSGD

            self.dp = DPSGD(num_examples=len(self.train), batch_size=min(fed.local_batch_size, len(self.train)),
                            epochs=fed.rounds * fed.local_epochs, l2_norm_clip=pc.l2_norm_clip,
                            noise_multiplier=pc.noise_multiplier, target_epsilon=pc.target_epsilon,
                            delta=None if pc.delta == "auto" else float(pc.delta), accountant=pc.accountant,
                            sampling=pc.sampling, clipping_mode=pc.clipping)
            cap = int(self.dp.max_steps.numpy())
            if cap < self.dp.planned_steps:
                from tfresp.errors import BudgetExhaustedError

                raise BudgetExhaustedError(
                    f"`privacy.noise_multiplier`: at site {self.name!r} the budget target_epsilon="
                    f"{pc.target_epsilon:g} allows {cap} of the {self.dp.planned_steps} planned local DP-SGD steps "
                    f"({fed.rounds} rounds). Received: noise_multiplier={pc.noise_multiplier}. Remedy: raise the "
                    "noise multiplier or the budget, leave noise_multiplier out (calibrated), or plan fewer rounds")
            model = self.dp.attach(model)
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=fed.local_learning_rate), weighted_metrics=[])
        self.model = model
        return model

    def fit(self, weights: List[np.ndarray], rnd: int) -> Tuple[List[np.ndarray], Optional[int]]:
        """Local training from the global ``weights`` in round ``rnd``: ``(new weights, training rows)``; under
        DP the row count is not released (``None``)."""
        from tfresp.data.dataset import make_dataset

        model = self._model()
        fed = self.config.federated
        self.core.set_weights(weights)
        tr = self.train
        if self.dp is None:
            ds = make_dataset(tr.x, tr.y, {}, min(fed.local_batch_size, len(tr)), shuffle=True,
                              seed=(self.seed + 7919 * int(rnd)) % (2 ** 31 - 1))
            model.fit(ds, epochs=fed.local_epochs, verbose=0)
        else:
            model.fit(self.dp.dataset(tr.x, tr.y), epochs=fed.local_epochs, verbose=0, callbacks=[self.dp.ledger])
        self.rounds_fit += 1
        return [np.array(w) for w in self.core.get_weights()], (None if self.dp is not None else len(tr))

    # -- evaluation ---------------------------------------------------------------------------------
    def evaluate(self, weights: List[np.ndarray], split: str) -> Optional[dict]:
        """The global model on the site's own ``split`` (``validation`` | ``test``) as counts only:
        ``rows``, ``loss_sum`` (summed cross-entropy), ``confusion[label][prediction]`` and, for binary tasks,
        ``groups[attribute][value] = [[tn, fp], [fn, tp]]``. None when the site has no such split."""
        from tfresp.run.context import predict_proba

        if split not in SPLITS:
            raise ValueError(f"`split`: one of {SPLITS}. Received: {split!r}")
        part = getattr(self, split)
        if part is None:
            return None
        if self.core is None:
            self.core = schema.build_core(self.config, self.pre)
        self.core.set_weights(weights)
        proba = predict_proba(self.core, part.x, batch_size=4096)
        y, pred = part.y, proba.argmax(axis=1)
        k = len(self.classes)
        out = {"rows": int(len(y)),
               "loss_sum": float(-np.sum(np.log(np.clip(proba[np.arange(len(y)), y], 1e-7, 1.0)))),
               "confusion": np.bincount(y * k + pred, minlength=k * k).reshape(k, k).tolist()}
        if k == 2:
            out["groups"] = {a: {str(g): np.bincount(y[v == g] * 2 + pred[v == g], minlength=4).reshape(2, 2).tolist()
                                 for g in np.unique(v)} for a, v in part.groups.items()}
        return out

    # -- privacy ------------------------------------------------------------------------------------
    def privacy(self) -> Optional[Dict[str, object]]:
        """This site's example-level DP-SGD account (None without ``privacy:``): ε after the steps taken."""
        if self.dp is None:
            if self.config.privacy is None:
                return None
            self._model()
        dp = self.dp
        dp.ledger.sync()
        return {"epsilon": float(dp.epsilon), "delta": float(dp.delta), "noise_multiplier": float(dp.noise_multiplier),
                "sampling_rate": float(dp.sample_rate), "steps": int(dp.steps), "planned_steps": int(dp.planned_steps),
                "steps_per_epoch": int(dp.steps_per_epoch), "l2_norm_clip": float(dp.l2_norm_clip),
                "sampling": dp.sampling, "accountant": dp.accountant_kind, "noise_source": dp.noise_source,
                "target_epsilon": dp.target_epsilon, "rounds_trained": self.rounds_fit}

"""Splitting the training rows over simulated clients (iid, by a column's values, or Dirichlet label skew)."""
from __future__ import annotations

from typing import List, Optional

import numpy as np
import pandas as pd

from tfresp.errors import ConfigError


def partition(n_clients: int, spec: str, y: np.ndarray, frame: Optional[pd.DataFrame], seed: int) -> List[np.ndarray]:
    """Row indices of each client. Every training row belongs to exactly one client; no client is empty."""
    rng = np.random.default_rng(seed)
    n = len(y)
    if n < n_clients:
        raise ConfigError([("federated.clients", n_clients, f"more clients than the {n} training rows")])
    if spec == "iid":
        return [np.sort(p) for p in np.array_split(rng.permutation(n), n_clients)]
    kind, _, arg = spec.partition(":")
    if kind == "by_column":
        if frame is None or arg not in frame.columns:
            raise ConfigError([("federated.partition", spec, f"column {arg!r} is not in the training data")])
        values = frame[arg].astype(str).to_numpy()
        uniq, counts = np.unique(values, return_counts=True)
        if len(uniq) < 2:  # one value: every client would hold the same population, i.e. an IID split
            raise ConfigError([("federated.partition", spec, f"column {arg!r} has a single value {uniq.tolist()} "
                                "in the training rows, so partitioning by it is no partition; name a column with "
                                "one value per client (site, region), or use 'iid'")])
        if len(uniq) > n_clients:
            raise ConfigError([("federated.clients", n_clients,
                                f"fewer clients than the {len(uniq)} values of {arg!r}; raise federated.clients")])
        # clients per value proportional to its rows (at least one each): every client holds one value only
        share = np.maximum(1, np.floor(counts / counts.sum() * n_clients).astype(int))
        while share.sum() > n_clients:
            share[np.argmax(share)] -= 1
        while share.sum() < n_clients:
            share[np.argmax(counts / share)] += 1
        parts = []
        for v, k in zip(uniq, share):
            idx = rng.permutation(np.flatnonzero(values == v))
            parts.extend(np.sort(p) for p in np.array_split(idx, min(k, len(idx))))
        return parts
    if kind == "dirichlet":
        alpha = float(arg)
        classes = np.unique(y)
        parts = [[] for _ in range(n_clients)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(y == c))
            props = rng.dirichlet([alpha] * n_clients)
            cuts = (np.cumsum(props) * len(idx)).astype(int)[:-1]
            for k, chunk in enumerate(np.split(idx, cuts)):
                parts[k].extend(chunk.tolist())
        empty = [k for k, p in enumerate(parts) if not p]
        for k in empty:  # give an empty client one row from the largest client
            big = int(np.argmax([len(p) for p in parts]))
            parts[k].append(parts[big].pop())
        return [np.sort(np.asarray(p, np.int64)) for p in parts]
    raise ConfigError([("federated.partition", spec, "one of 'iid', 'by_column:<column>', 'dirichlet:<alpha>'")])

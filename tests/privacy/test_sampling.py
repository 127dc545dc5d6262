"""poisson_indices (geometric gaps, O(n·q)) against the exact Bernoulli(q) law, with samplers broken on purpose.

Three checks, each a test of the exact law the subsampled-Gaussian accountant assumes:
* every row is in with probability q (chi-square of the per-row inclusion counts, df = n);
* the sample size is Binomial(n, q) (chi-square against the pmf);
* rows are independent: the number of adjacent included pairs has the mean and variance it has under independence.
Each check is shown to reject a sampler that breaks it (wrong rate, a never-sampled row, dependent pairs).
"""
import math

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from tfresp.privacy import sampling
from tfresp.privacy.sampling import poisson_indices

N, Q, T = 60, 0.2, 3000
ALPHA = 1e-4  # fixed seeds make every check deterministic; ALPHA only sets how far from the law is "broken"


def _draws(sampler, n=N, q=Q, t=T, seed=7):
    fn = tf.function(lambda s: sampler(n, q, s))
    return [fn(tf.constant([seed, i], tf.int64)).numpy() for i in range(t)]


def _membership(draws, n):
    m = np.zeros((len(draws), n), bool)
    for i, d in enumerate(draws):
        m[i, d] = True
    return m


def _p_rows(draws, n, q):
    c = _membership(draws, n).sum(axis=0)
    t = len(draws)
    chi2 = float(np.sum((c - t * q) ** 2 / (t * q * (1 - q))))
    return float(stats.chi2.sf(chi2, df=n))


def _p_sizes(draws, n, q):
    sizes = np.array([len(d) for d in draws])
    expected = stats.binom.pmf(np.arange(n + 1), n, q) * len(draws)
    observed = np.bincount(sizes, minlength=n + 1).astype(float)
    # merge the tails until every bin expects at least 5
    keep = expected >= 5
    e = np.append(expected[keep], expected[~keep].sum())
    o = np.append(observed[keep], observed[~keep].sum())
    chi2 = float(np.sum((o - e) ** 2 / e))
    return float(stats.chi2.sf(chi2, df=len(e) - 1))


def _p_pairs(draws, n, q):
    m = _membership(draws, n)
    pairs = (m[:, 1:] & m[:, :-1]).sum(axis=1)
    mean = (n - 1) * q ** 2
    var = (n - 1) * q ** 2 * (1 - q ** 2) + 2 * (n - 2) * (q ** 3 - q ** 4)
    z = (pairs.sum() - len(draws) * mean) / math.sqrt(len(draws) * var)
    return float(2 * stats.norm.sf(abs(z)))


def _p_all(draws, n=N, q=Q):
    return _p_rows(draws, n, q), _p_sizes(draws, n, q), _p_pairs(draws, n, q)


@pytest.fixture(scope="module")
def good():
    return _draws(poisson_indices)


def test_geometric_gaps_follow_the_bernoulli_law(good):
    assert all(np.array_equal(d, np.unique(d)) and (d.min(initial=0) >= 0) and d.max(initial=0) < N for d in good)
    assert min(_p_all(good)) > ALPHA, _p_all(good)


def test_several_chunks_give_the_same_law(monkeypatch):
    """Chunks of one gap: the loop draws a chunk per member (and one past the end), and the law must not change."""
    monkeypatch.setattr(sampling, "_CHUNK_SIGMAS", -1e9)  # chunk = max(1, ...) = 1
    draws = _draws(poisson_indices, n=200, q=0.3, t=1500, seed=11)
    assert min(_p_all(draws, n=200, q=0.3)) > ALPHA


def test_each_check_rejects_a_broken_sampler():
    def rate_off(n, q, s):
        return poisson_indices(n, q * 1.06, s)

    def row_zero_never(n, q, s):
        return poisson_indices(n - 1, q, s) + 1

    def paired(n, q, s):  # right marginals, but rows 2k and 2k+1 always together
        half = poisson_indices(n // 2, q, s)
        return tf.reshape(tf.stack([2 * half, 2 * half + 1], axis=1), [-1])

    p = _p_all(_draws(rate_off))
    assert p[0] < ALPHA and p[1] < ALPHA, p
    assert _p_rows(_draws(row_zero_never), N, Q) < ALPHA
    p = _p_all(_draws(paired))
    assert p[0] > ALPHA and p[2] < ALPHA, p  # marginals pass, the independence check does not


def test_edges_and_large_n():
    assert np.array_equal(poisson_indices(5, 1.0, tf.constant([1, 2], tf.int64)).numpy(), np.arange(5))
    tiny = [len(poisson_indices(10, 1e-9, tf.constant([3, i], tf.int64))) for i in range(20)]
    assert tiny == [0] * 20
    n, q = 10_000_000, 256 / 10_000_000
    fn = tf.function(lambda s: poisson_indices(n, q, s))
    sizes = []
    for i in range(30):
        d = fn(tf.constant([5, i], tf.int64)).numpy()
        assert d.min() >= 0 and d.max() < n and np.all(np.diff(d) > 0)
        sizes.append(len(d))
    assert abs(np.mean(sizes) - 256) < 4 * 16 / math.sqrt(30)

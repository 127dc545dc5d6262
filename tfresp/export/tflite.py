"""TFLite export (float, dynamic-range int8, full-integer int8, float16) with a reload round-trip check.

The TFLite model is the *core* (encoded features -> logits): the fitted preprocessing stays in
``preprocessing/`` and in the SavedModel (string hash tables are not TFLite builtins). Each
variant is converted, written atomically to ``run_dir/model_<variant>.tflite``, reloaded in a
fresh interpreter and compared with the Keras model on test rows:

===========  =============================================  =====================================
variant      conversion                                     round-trip tolerance (probabilities)
===========  =============================================  =====================================
float        no optimization                                max |Δp| <= 1e-4
float16      weights stored as float16                      max |Δp| <= 1e-2
dynamic      int8 weights, float activations                agreement >= 0.97, mean |Δp| <= 0.02
int8         int8 weights+activations, calibrated on a      agreement >= 0.95, mean |Δp| <= 0.03
             sample of training rows (or public rows:
             ``compression.calibration``; see below)
===========  =============================================  =====================================

Ops without an int8 kernel do not crash the export: the converter retries with float
fallback and the report lists the ops (with their tensor names, which carry the layer names)
that stayed float. References: Jacob et al. 2018 (integer-only inference), TFLite
post-training quantization guide.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from tfresp.compression.measure import gzip_size, latency_ms, num_rows, scores, take_rows
from tfresp.run.io import atomic_write

log = logging.getLogger("tfresp")

VARIANTS = ("float", "dynamic", "int8", "float16")
TOLERANCE = {
    "float": {"max_abs_diff": 1e-4},
    "float16": {"max_abs_diff": 1e-2},
    "dynamic": {"agreement": 0.97, "mean_abs_diff": 0.02},
    "int8": {"agreement": 0.95, "mean_abs_diff": 0.03},
}
_WEIGHT_OPS = {"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "BATCH_MATMUL", "TRANSPOSE_CONV"}
_NOT_COMPUTE = {"QUANTIZE", "DEQUANTIZE", "RESHAPE", "SHAPE", "STRIDED_SLICE", "PACK", "DELEGATE"}


def _input_specs(x):
    if isinstance(x, dict):
        return {k: tf.TensorSpec([None, *np.asarray(v).shape[1:]], tf.as_dtype(np.asarray(v).dtype), name=k)
                for k, v in x.items()}
    x = np.asarray(x)
    return tf.TensorSpec([None, *x.shape[1:]], tf.as_dtype(x.dtype), name="features")


def concrete_function(core, sample_x):
    """A concrete ``logits = core(x)`` function over the structure/dtype of ``sample_x``."""
    spec = _input_specs(sample_x)
    if isinstance(spec, dict):
        fn = tf.function(lambda **kw: {"logits": core(kw, training=False)})
        return fn.get_concrete_function(**spec)
    fn = tf.function(lambda features: {"logits": core(features, training=False)})
    return fn.get_concrete_function(spec)


def convert(core, variant: str, representative_x=None, sample_x=None) -> Dict[str, object]:
    """Convert ``core`` to TFLite ``variant``.

    Returns:
        ``{"content": bytes, "float_fallback": [...], "strict": bool}``; ``float_fallback`` lists
        the ops left in float for the int8 variant (empty when every op is integer).
    """
    if variant not in VARIANTS:
        raise ValueError(f"Invalid value for argument `variant`. Received: variant={variant!r}. "
                         f"Expected one of {VARIANTS}")
    sample_x = representative_x if sample_x is None else sample_x
    cf = concrete_function(core, sample_x)

    def converter(ops=None):
        conv = tf.lite.TFLiteConverter.from_concrete_functions([cf], core)
        if variant != "float":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
        if variant == "float16":
            conv.target_spec.supported_types = [tf.float16]
        if variant == "int8":
            if representative_x is None:
                raise ValueError("the int8 variant needs representative rows")

            def rep():
                for i in range(num_rows(representative_x)):
                    row = take_rows(representative_x, slice(i, i + 1))
                    yield row if isinstance(row, dict) else [row]

            conv.representative_dataset = rep
            conv.target_spec.supported_ops = ops
        return conv

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if variant != "int8":
            return {"content": converter().convert(), "float_fallback": [], "strict": True}
        try:
            content = converter([tf.lite.OpsSet.TFLITE_BUILTINS_INT8]).convert()
        except Exception as exc:  # an op without an int8 kernel: retry with float fallback, report the ops
            log.warning("tfresp: integer-only int8 conversion failed (%s); retrying with float fallback",
                        str(exc).splitlines()[0][:200])
            content = converter([tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]).convert()
        # The MLIR quantizer may also silently keep an op in float: always inspect the result.
        fallback = float_ops(content)
        for op in fallback:
            log.warning("tfresp: int8 TFLite keeps %s (%s) in float", op["op"], op["tensor"])
        return {"content": content, "float_fallback": fallback, "strict": not fallback}


def _interpreter(content: bytes, delegates: bool = True, num_threads: int = 1):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = {}
        if not delegates:
            kw["experimental_op_resolver_type"] = tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        interp = tf.lite.Interpreter(model_content=content, num_threads=num_threads, **kw)
    interp.allocate_tensors()
    return interp


def float_ops(content: bytes) -> List[Dict[str, str]]:
    """Compute ops of a converted model that run in float, named by their output tensor (layer path).

    The QUANTIZE/DEQUANTIZE pair at the float model boundary is expected and not listed.
    """
    interp = _interpreter(content, delegates=False)
    details = {t["index"]: t for t in interp.get_tensor_details()}
    out = []
    for op in interp._get_ops_details():  # noqa: SLF001 (TFLite has no public per-op API)
        if op["op_name"] in _NOT_COMPUTE:
            continue
        ins = [details[int(i)] for i in op["inputs"] if int(i) >= 0 and int(i) in details]
        if any(t["dtype"] in (np.float32, np.float16) for t in ins):
            outs = [details[int(i)]["name"] for i in op["outputs"] if int(i) in details]
            out.append({"op": op["op_name"], "tensor": outs[0] if outs else ins[0]["name"]})
    return out


def tflite_sparsity(content: bytes) -> Dict[str, object]:
    """Sparsity of the constant weight tensors that weight ops read (through DEQUANTIZE)."""
    interp = _interpreter(content, delegates=False)
    ops = interp._get_ops_details()  # noqa: SLF001
    produced = {int(o): op for op in ops for o in op["outputs"]}
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    per, zeros, total = {}, 0, 0
    for op in ops:
        if op["op_name"] not in _WEIGHT_OPS or len(op["inputs"]) < 2:
            continue
        w_idx = int(op["inputs"][1])
        src = produced.get(w_idx)
        if src is not None:
            if src["op_name"] != "DEQUANTIZE":
                continue  # an activation (e.g. attention scores), not a weight
            w_idx = int(src["inputs"][0])
            if w_idx in produced:
                continue
        try:
            w = interp.get_tensor(w_idx)
        except ValueError:
            continue
        z = int(w.size - np.count_nonzero(w))
        per[names.get(w_idx, str(w_idx))] = float(z / max(w.size, 1))
        zeros += z
        total += int(w.size)
    return {"global": float(zeros / total) if total else 0.0, "per_layer": per}


class TFLiteModel:
    """A loaded TFLite model behind ``predict_logits(x)`` (signature runner; resizes per batch)."""

    def __init__(self, content: bytes, num_threads: int = 1):
        self.interpreter = _interpreter(content, num_threads=num_threads)
        self.runner = self.interpreter.get_signature_runner()
        self._inputs = list(self.interpreter.get_signature_list()["serving_default"]["inputs"])

    def _feed(self, x):
        if isinstance(x, dict):
            return {k: np.asarray(v) for k, v in x.items()}
        return {self._inputs[0]: np.asarray(x)}

    def predict_logits(self, x, batch_size: int = 256) -> np.ndarray:
        n = num_rows(x)
        out = None  # one preallocated result (not a list of thousands of small batch arrays)
        for start in range(0, n, batch_size):
            rows = take_rows(x, slice(start, min(start + batch_size, n)))
            logits = np.asarray(self.runner(**self._feed(rows))["logits"], np.float32)
            if out is None:
                out = np.empty((n,) + logits.shape[1:], np.float32)
            out[start:start + len(logits)] = logits
        if out is None:  # the output width is only known from a run of the interpreter
            raise ValueError("`x`: TFLiteModel.predict_logits has no rows to predict. Received: 0 rows. "
                             "Remedy: pass at least one row.")
        return out


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def roundtrip(variant: str, reference_proba: np.ndarray, proba: np.ndarray) -> Dict[str, object]:
    """Compare TFLite and Keras probabilities against the documented tolerance of ``variant``."""
    diff = np.abs(proba - reference_proba)
    res = {"rows": int(len(proba)), "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
           "agreement": float(np.mean(proba.argmax(1) == reference_proba.argmax(1))),
           "tolerance": TOLERANCE[variant]}
    tol = TOLERANCE[variant]
    res["passed"] = bool(all((res[k] >= v) if k == "agreement" else (res[k] <= v) for k, v in tol.items()))
    return res


def representative_rows(x, rows: int, seed: int):
    """A seeded sample of *training* rows used to calibrate int8 activation ranges."""
    n = num_rows(x)
    idx = np.sort(np.random.default_rng(seed).choice(n, size=min(rows, n), replace=False))
    return take_rows(x, idx)


def file_sha256(path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def private_int8_problems(config, variants, train_digests=()) -> list:
    """Under ``privacy``: int8 ``variants`` calibrated on training rows, or on a file that IS the training data
    (same sha256 as a source file), release activation ranges of private rows outside the budget: refused.

    Returns ``(field, value, reason)`` problems (empty when none)."""
    from tfresp.config import is_dp_run

    if not is_dp_run(config) or "int8" not in variants:  # example-level or client-level (federated) DP
        return []
    comp = config.compression
    source = comp.calibration if comp is not None else "train"
    if source == "train":
        return [("compression.calibration", "train", "int8 under privacy would calibrate its activation ranges on "
                 "private training rows, outside the run's (epsilon, delta). Remedy: set compression.calibration "
                 "to a CSV/parquet file of public rows, or export float16/dynamic (post-processing of the weights)")]
    if train_digests and Path(source).is_file() and file_sha256(source) in set(train_digests):
        return [("compression.calibration", source, "this file is the training data (same sha256 as the run's "
                 "source): calibrating on it releases private rows' activation ranges. Remedy: point it at "
                 "public rows")]
    return []


def calibration_rows(config, data):
    """Rows that calibrate int8 activation ranges, and what the report must say about them.

    ``compression.calibration: train`` samples training rows. Activation ranges are a
    data-dependent statistic of those rows that DP-SGD's accountant never saw, so under
    ``privacy`` the int8 variant is marked ``privacy_covered: false``; point
    ``compression.calibration`` at a file of public rows to keep it covered. float, float16
    and dynamic-range variants only transform the weights (post-processing): always covered.
    """
    comp = config.compression
    rows = comp.representative_rows if comp is not None else 200
    source = comp.calibration if comp is not None else "train"
    if source == "train":
        from tfresp.config import is_dp_run

        if is_dp_run(config):  # backstop: fit and `tfresp export` refuse this before any work
            from tfresp.errors import ConfigError

            raise ConfigError(private_int8_problems(config, ["int8"]))
        x = representative_rows(data.train.x, rows, config.seed)
        info = {"source": "training split", "rows": num_rows(x), "privacy_covered": config.privacy is None}
        if config.privacy is not None:
            info["note"] = ("int8 activation ranges were calibrated on private training rows; they are not covered "
                            "by the run's (epsilon, delta). Set compression.calibration to a file of public rows.")
    else:
        import pandas as pd

        from tfresp.errors import DataError

        path = Path(source)
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        missing = [c for c in data.feature_columns if c not in df.columns]
        if missing:
            raise DataError(f"Invalid value for `compression.calibration`: {str(path)!r} lacks feature columns "
                            f"{missing[:10]}")
        full = data.preprocessor.transform_frame(df)
        x = representative_rows(full, rows, config.seed)
        info = {"source": path.name, "rows": num_rows(x), "privacy_covered": True}
    return x, info


def export_variant(core, variant: str, data, path: Optional[Path], *, reference_proba=None, calibration=None,
                   latency_runs: int = 200, check_rows: int = 2000, private: bool = False,
                   qat: bool = False) -> Dict[str, object]:
    """Convert, (write,) reload, round-trip check and measure one TFLite variant of ``core``.

    Args:
        calibration: ``(rows, info)`` from :func:`calibration_rows` (needed for ``int8``).
        private: the run trained with DP: record whether the variant stays covered.
        qat: ``core`` was trained with QAT: its fake-quant nodes make every variant (float and
            float16 included) integer-quantized, so the round trip uses the int8 tolerance.

    Returns a dict with ``accuracy, group_gap, bytes, gzip_bytes, latency_ms_p50, latency_ms_p95,
    sparsity, per_layer_sparsity, roundtrip, float_fallback`` (and ``path`` if written).
    """
    rep, cal_info = calibration if calibration is not None else (take_rows(data.train.x, slice(0, 100)), None)
    conv = convert(core, variant, representative_x=rep)
    content = conv["content"]
    out: Dict[str, object] = {"format": "tflite", "variant": variant}
    if variant == "int8":
        out["calibration"] = cal_info
    if private:
        out["privacy_covered"] = bool(cal_info["privacy_covered"]) if variant == "int8" and cal_info else True
    if path is not None:
        atomic_write(path, content)
        out["path"] = path.name
    # Reload from disk (or bytes) in a fresh interpreter: this is the round trip.
    model = TFLiteModel(path.read_bytes() if path is not None else content)
    test = data.test
    proba = _softmax(model.predict_logits(test.x))
    out.update(scores(test.y, proba, test.groups, data.num_classes))
    if reference_proba is not None:
        n = min(check_rows, len(proba))
        out["roundtrip"] = roundtrip("int8" if qat else variant, reference_proba[:n], proba[:n])
        if qat:
            out["roundtrip"]["tolerance_basis"] = "int8 (QAT model: fake-quant nodes quantize every variant)"
    sp = tflite_sparsity(content)
    out.update({"bytes": len(content), "gzip_bytes": gzip_size(content), "sparsity": sp["global"],
                "per_layer_sparsity": sp["per_layer"], "float_fallback": conv["float_fallback"],
                "strict_int8": conv["strict"] if variant == "int8" else None})
    one = take_rows(test.x, slice(0, 1))
    feed = model._feed(one)
    out.update(latency_ms(lambda f: model.runner(**f), feed, runs=latency_runs))
    out["latency_threads"] = 1
    return out


def export_tflite(ctx, variants) -> Dict[str, dict]:
    """Write ``run_dir/model_<variant>.tflite`` for each variant not converted yet; keep its measurements in
    ``ctx.tflite`` (the post-fit stage; :func:`record` puts them in the report).

    A variant that cannot be converted is kept with its error instead of failing the run.
    """
    comp = ctx.config.compression
    runs = comp.latency_runs if comp is not None else 200
    todo = [v for v in dict.fromkeys(variants) if v not in ctx.tflite]
    if not todo:
        return ctx.tflite
    calibration = calibration_rows(ctx.config, ctx.data) if "int8" in todo else None
    reference = ctx.predictions.get("test")
    if reference is None:
        reference = ctx.predict_proba(ctx.data.test.x)
    params = int(sum(int(np.prod(v.shape)) for v in ctx.core.weights))
    for variant in todo:
        path = ctx.run_dir / f"model_{variant}.tflite"
        try:
            res = export_variant(ctx.core, variant, ctx.data, path, reference_proba=reference,
                                 calibration=calibration, latency_runs=runs, private=ctx.config.privacy is not None,
                                 qat=comp is not None and comp.quantize == "qat")
        except Exception as exc:  # report, never crash the run on an exporter limitation
            log.warning("tfresp: TFLite %s export failed: %s", variant, exc)
            ctx.tflite[variant] = {"error": f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:300]}"}
            continue
        res["parameters"] = params
        ctx.tflite[variant] = res
        ctx.artifacts[f"tflite_{variant}"] = res["path"]
        if res.get("roundtrip") and not res["roundtrip"]["passed"]:
            log.warning("tfresp: TFLite %s round trip outside tolerance: %s", variant, res["roundtrip"])
    return ctx.tflite


def record(ctx) -> None:
    """The export stage's record of the converted variants: measurements in ``report["compression"][<variant>]``,
    paths and round-trip checks in ``report["export"]["tflite"][<variant>]``."""
    if not ctx.tflite:
        return
    section = ctx.report.get("compression") or {}
    ctx.report["compression"] = section
    exp = ctx.report.get("export") or {}
    ctx.report["export"] = exp
    for variant, res in ctx.tflite.items():
        section[variant] = res
        if "error" not in res:
            exp.setdefault("tflite", {})[variant] = {"path": res["path"], "bytes": res["bytes"],
                                                     "roundtrip": res.get("roundtrip")}

"""Admission of a user's model under DP-SGD by measurement, not by a list of layer types.

Three probes on synthetic inputs (never on private rows, so the decision itself leaks nothing):

1. **Written state** (:func:`assigned_variables`): the training forward pass, loss and gradient are traced as one
   ``tf.function``; every variable-writing op (``AssignVariableOp``, ``AssignAddVariableOp``, scatter updates, ...)
   is read from the graph, including those inside ``tf.cond``/``tf.while_loop`` branches and nested functions, and
   mapped back to its variable through the graph's captured resource handles. Such a write is data-dependent
   state that is released with the model outside the clipped and noised gradient; a random probe batch cannot
   trigger a memory gated on the input range or a step counter, the traced graph shows it anyway. Writes by the
   optimizer (trainable weights, slots), metrics and tfresp's DP state happen outside this trace; RNG state
   advances (``RngReadAndSkip`` and kin) are data-independent and not counted as writes. Table, queue and stack
   writes count as writes, and ops that send a value out of the step (``tf.print``, ``tf.py_function``,
   ``tf.io.write_file``, ``tf.summary`` writes: traced under a temporary default writer) are refused too.
2. **Independence** (:func:`independence_problem`): changing any example ``j`` of a 4-row probe batch must leave
   every other example's output and the gradient of their loss unchanged; otherwise one example can move the
   clipped sum by more than ``C`` (a layer computing ``t - mean over the batch``). Before ghost clipping (which
   runs the forward pass on the whole batch) is chosen, the probe runs again at the run's largest likely batch
   size. A loss the model adds itself (``add_loss``) must not change with the batch (:func:`added_loss_problem`).

What a probe cannot see: a mixing that only happens on some steps (a ``tf.cond`` on a counter), for some input
values, or at batch sizes other than the probed ones (4 rows and the largest likely batch). On the ``vectorized``
and ``loop`` paths such a mixing cannot cross examples (each example's gradient is computed on a batch of its
own); on the ``ghost`` path it would break the bound, so a model whose code is not trusted should use
``clipping: vectorized``.
3. **Ghost exactness** (:func:`ghost_exactness_problem`): no weight of a supported layer is used by a graph op
   outside that layer's call (:func:`foreign_weight_uses`, static, so also inside a ``tf.cond`` a probe does not
   take), and ghost per-example norms equal a per-example loop within ``1e-5`` (relative) on a probe batch;
   weights tied through a ``Lambda`` or ``tf.matmul`` on another layer's kernel, or a tied embedding, fail both.

And one for the per-example path: a forward pass with a ``tf.while_loop`` (recurrent layers) has a gradient that
``tf.vectorized_map`` cannot vectorise; such models clip in a per-example loop (:func:`needs_loop`).

Example:
    >>> mode, reason = clipping.admit(model, "auto")  # raises IncompatibleModelError listing every problem
"""
from __future__ import annotations

import contextlib
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tfresp.errors import IncompatibleModelError  # noqa: F401 - raised by admit via clipping
from tfresp.privacy import ghost

#: Relative tolerance of the ghost-exactness probe.
EXACTNESS_RTOL = 1e-5
#: Op types that write a resource variable's value.
_WRITE_PREFIXES = ("Assign", "ResourceScatter", "ResourceApply", "ResourceSparseApply", "ResourceStridedSliceAssign")
_WRITE_OPS = {"AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp", "AssignVariableXlaConcatND",
              "ResourceStridedSliceAssign"}
_WHILE_OPS = {"While", "StatelessWhile"}
#: Resource writes that are not variables: a table, queue or stack filled from the batch keeps rows in the model.
_RESOURCE_WRITE_PREFIXES = ("LookupTableInsert", "LookupTableRemove", "LookupTableImport", "QueueEnqueue",
                            "StackPush")
#: Ops that send a value out of the step (stdout, Python, a file, a summary): read from the traced graph.
_OUTPUT_OPS = {"PrintV2", "Print", "EagerPyFunc", "PyFunc", "PyFuncStateless", "WriteFile", "Save", "SaveV2",
               "SaveSlices"}


def _is_output(op_type: str) -> bool:
    return op_type in _OUTPUT_OPS or (op_type.startswith("Write") and op_type.endswith("Summary"))


def _is_write(op_type: str) -> bool:
    return op_type in _WRITE_OPS or op_type.startswith(_WRITE_PREFIXES + _RESOURCE_WRITE_PREFIXES)


def _last_line(e: Exception) -> str:
    """The informative line of an error (TF's traced errors start with "in user code:")."""
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    return lines[-1][:300] if lines else ""


def _core(model):
    """The core of a ResponsibleModel, or ``model`` itself (a user's model may have its own ``core`` attribute)."""
    from tfresp.models.base import ResponsibleModel

    return model.core if isinstance(model, ResponsibleModel) else model


# -- probe inputs ------------------------------------------------------------------------------------------------
def _input_specs(core) -> Optional[list]:
    """``[(shape without batch, dtype)]`` of ``core``'s inputs, or ``None`` when unknown."""
    if ghost.is_functional(core) and core.inputs:
        return [(t.shape.as_list()[1:], t.dtype) for t in core.inputs]
    spec = getattr(core, "_saved_model_inputs_spec", None)  # set by the first call of a subclassed model
    if spec is None:
        return None
    flat = tf.nest.flatten(spec)
    if not flat or not all(isinstance(s, tf.TensorSpec) and s.shape.rank is not None for s in flat):
        return None
    return [(s.shape.as_list()[1:], s.dtype) for s in flat]


def probe_batch(core, rows: int = 4, seed: int = 0):
    """Synthetic inputs for ``core`` (``rows`` examples), or ``None`` when its inputs are unknown."""
    specs = _input_specs(core)
    if specs is None:
        return None
    rng = np.random.default_rng(seed)
    out = []
    for shape, dtype in specs:
        shape = [rows] + [d if d is not None else 16 for d in shape]
        if dtype.is_integer:
            out.append(tf.constant(rng.integers(0, 2, shape), dtype))
        elif dtype.is_floating:
            out.append(tf.constant(rng.normal(size=shape), dtype))
        elif dtype == tf.string:
            words = np.array(["a", "b", "c", "d"])
            out.append(tf.constant([" ".join(rng.choice(words, 5)) for _ in range(int(np.prod(shape)))],
                                   tf.string, shape=shape))
        else:
            return None
    if ghost.is_functional(core):
        return out[0] if len(out) == 1 else out
    return tf.nest.pack_sequence_as(core._saved_model_inputs_spec, out)


def _replace_row(x, j: int, seed: int):
    """``x`` with example ``j`` replaced by a fresh synthetic row (same dtype/shape)."""
    rng = np.random.default_rng(seed)

    def one(t):
        t = tf.convert_to_tensor(t)
        shape = [1] + t.shape.as_list()[1:]
        if t.dtype.is_integer:
            new = tf.constant(rng.integers(2, 5, shape), t.dtype)
        elif t.dtype.is_floating:
            new = tf.constant(rng.normal(size=shape) * 2.0 + 1.0, t.dtype)
        else:
            new = tf.constant(np.array(["d c b a"] * int(np.prod(shape))).reshape(shape), t.dtype)
        return tf.concat([t[:j], new, t[j + 1:]], axis=0)

    return tf.nest.map_structure(one, x)


def _probe_loss(outputs, seed: int = 7):
    """A per-example loss ``[B]`` of the outputs (any shape): a fixed random projection plus a square."""
    flat = [tf.reshape(tf.cast(o, tf.float32), [tf.shape(o)[0], -1]) for o in tf.nest.flatten(outputs)]
    out = tf.concat(flat, axis=1) if len(flat) > 1 else flat[0]
    width = out.shape[1] if out.shape[1] is not None else 1
    r = tf.constant(np.random.default_rng(seed).normal(size=(1, width)), tf.float32)
    return tf.reduce_sum(r * out + 0.5 * tf.square(out), axis=1)


@contextlib.contextmanager
def _probe_seed(seed: int):
    """Set TF's global seed for a probe, then restore the caller's (unseeded stays unseeded: a fixed global seed
    left behind would make later unseeded random draws, e.g. DP noise drawn without a secret seed, predictable)."""
    from tensorflow.python.eager import context  # TF internals: the eager global seed and its generator

    ctx = context.context()
    saved = (ctx._seed, getattr(ctx, "_rng", None))  # no _rng until a global seed was ever set
    tf.random.set_seed(seed)
    try:
        yield
    finally:
        ctx._set_global_seed(saved[0])
        if saved[1] is None:
            del ctx._rng
        else:
            ctx._rng = saved[1]


def _snapshot(core):
    variables = list(core.variables)
    return variables, [v.numpy() for v in variables]


def _restore(snapshot):
    for v, value in zip(*snapshot):
        v.assign(value)


# -- 1. written state --------------------------------------------------------------------------------------------
def _func_attrs(node) -> Tuple[List[str], int]:
    """Names of the functions a functional op calls and how many leading inputs are not their arguments."""
    names = []
    for key in ("then_branch", "else_branch", "body", "cond", "f"):
        if key in node.attr and node.attr[key].func.name:
            names.append(node.attr[key].func.name)
    if "branches" in node.attr:
        names += [f.name for f in node.attr["branches"].list.func]
    skip = 1 if node.op in ("If", "StatelessIf", "Case", "StatelessCase") else 0
    return names, skip


class _WriteScan:
    """Which inputs of a graph (or function) reach a variable-writing op, through nested functions."""

    def __init__(self, library):
        self.library = {f.signature.name: f for f in library.function}
        self._memo: Dict[str, set] = {}
        self.has_while = False
        #: types of the ops that send a value out of the step (see :data:`_OUTPUT_OPS`)
        self.outputs: set = set()

    def function_writes(self, name: str) -> set:
        """Indices of ``name``'s arguments that are written (transitively)."""
        if name in self._memo:
            return self._memo[name]
        self._memo[name] = set()  # recursion guard
        fdef = self.library.get(name)
        if fdef is None:
            return set()
        args = {a.name: i for i, a in enumerate(fdef.signature.input_arg)}
        nodes = {n.name: n for n in fdef.node_def}
        out = set()
        for target in self.scan(fdef.node_def, nodes):
            if target in args:
                out.add(args[target])
        self._memo[name] = out
        return out

    @staticmethod
    def _source(ref: str, nodes) -> str:
        """The node or argument a ``name[:out[:i]]`` input ultimately comes from (through Identity ops)."""
        for _ in range(100):
            name = ref.lstrip("^").split(":")[0]
            node = nodes.get(name)
            if node is None or node.op not in ("Identity", "IdentityN") or not node.input:
                return name
            ref = node.input[0]
        return ref

    def scan(self, node_defs, nodes) -> List[str]:
        """Sources (argument or node names) of every resource written by ``node_defs``."""
        written = []
        for node in node_defs:
            if node.op in _WHILE_OPS:
                self.has_while = True
            if _is_output(node.op):
                self.outputs.add(node.op)
            if _is_write(node.op) and node.input:
                written.append(self._source(node.input[0], nodes))
                continue
            names, skip = _func_attrs(node)
            data = [i for i in node.input if not i.startswith("^")][skip:]
            for fname in names:
                for idx in self.function_writes(fname):
                    if idx < len(data):
                        written.append(self._source(data[idx], nodes))
        return written


def _local(variables) -> list:
    """Gradient targets for a probe: a tf.distribute variable's local component (a probe runs in the
    cross-replica context of the run's strategy scope, where such a variable's reads use that component and its
    ``handle`` raises); plain variables as they are."""
    return [v._get_on_device_or_primary() if isinstance(v, tf.distribute.DistributedValues) else v  # noqa: SLF001
            for v in variables]


def _handles(v) -> list:
    """The resource handles a traced read of ``v`` can capture: every component of a tf.distribute variable
    (outside a replica context its ``handle`` raises; a cross-replica read captures a component's)."""
    parts = v.values if isinstance(v, tf.distribute.DistributedValues) else (v,)
    out = []
    for part in parts:
        try:
            handle = part.handle
        except (AttributeError, ValueError):
            continue
        if handle is not None:
            out.append(handle)
    return out


def _known_variables(model) -> Dict[int, tf.Variable]:
    out = {}
    for v in list(model.variables) + [v for layer in ghost.all_layers(model) for v in layer.weights]:
        for handle in _handles(v):
            out[id(handle)] = v
    return out


def _probe_labels(model, outputs):
    """Labels for ``model``'s base loss guessed from the output width (sparse classes / one binary column)."""
    out = tf.nest.flatten(outputs)[0]
    rows, width = int(out.shape[0]), int(out.shape[-1]) if out.shape.rank and out.shape[-1] else 1
    return tf.constant(np.arange(rows) % max(width, 2) if width > 1 else np.arange(rows) % 2)


def _traced_step(model, x):
    """The concrete function of the training forward pass + per-example loss + gradient on ``x``."""
    core = _core(model)
    variables = core.trainable_variables
    if model is not core:
        y = _probe_labels(model, core(x, training=False))

        def step_model(x, y):
            with tf.GradientTape() as tape:
                loss, _ = model.per_example_loss(x, y, {}, training=True)
                loss = tf.reduce_sum(loss)
            return tape.gradient(loss, _local(variables), unconnected_gradients=tf.UnconnectedGradients.ZERO)

        try:
            return tf.function(step_model).get_concrete_function(x, y)
        except Exception:  # noqa: BLE001 - a guessed label may not fit the user's loss: trace the core only
            pass

    def step_core(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(_probe_loss(core(x, training=True)))
        return tape.gradient(loss, _local(variables), unconnected_gradients=tf.UnconnectedGradients.ZERO)

    return tf.function(step_core).get_concrete_function(x)


@contextlib.contextmanager
def _recording_summaries():
    """A default summary writer (to a temporary directory) while the step is traced: without one ``tf.summary``
    calls trace to nothing, and during ``fit`` a TensorBoard callback sets one."""
    with tempfile.TemporaryDirectory() as tmp:
        writer = tf.summary.create_file_writer(tmp)
        try:
            with writer.as_default(), tf.summary.record_if(True):
                yield
        finally:
            writer.close()


def assigned_variables(model, x=None) -> Tuple[List[tf.Variable], List[str], bool]:
    """Variables the traced training forward/loss/gradient writes.

    Args:
        model: a ResponsibleModel (its input transform and per-example terms are traced too) or a core.
        x: a probe batch (default: :func:`probe_batch`).

    Returns:
        ``(variables, unknown, has_while)``: the written model variables; descriptions of written resources that
        are not variables of the model (a captured global variable, ...); whether the graph has a while loop.
    """
    core = _core(model)
    x = probe_batch(core) if x is None else x
    snap = _snapshot(core)
    try:
        with _recording_summaries():
            cf = _traced_step(model, x)
    finally:
        _restore(snap)
    graph_def = cf.graph.as_graph_def()
    scan = _WriteScan(graph_def.library)
    nodes = {n.name: n for n in graph_def.node}
    sources = set(scan.scan(graph_def.node, nodes))
    for name in list(scan.library):  # functions reached only through attributes the scan does not follow
        scan.function_writes(name)
    by_placeholder = {internal.op.name: external for external, internal in cf.graph.captures}
    known = _known_variables(model)
    written, unknown = [], []
    for name in sorted(sources):
        external = by_placeholder.get(name)
        var = known.get(id(external)) if external is not None else None
        if var is not None:
            if all(var is not w for w in written):
                written.append(var)
        elif external is not None and external.dtype == tf.resource:
            unknown.append(f"a resource captured from outside the model ({name})")
        else:
            unknown.append(f"a resource created inside the step ({name})")
    unknown += [f"an op that sends values out of the step ({op})" for op in sorted(scan.outputs)]
    return written, unknown, scan.has_while


def _owner_names(core, variables) -> List[str]:
    owners = []
    layers = [l for l in ghost.all_layers(core)] + [core]
    for v in variables:
        owner = next((l for l in layers if any(v is w for w in ghost.own_weights(l, True) + ghost.own_weights(l, False))),
                     None)
        shown = f"{owner.name!r} ({type(owner).__name__})" if owner is not None else "<no layer>"
        owners.append(f"{shown} variable {v.name!r}")
    return owners


# -- 2. independence ---------------------------------------------------------------------------------------------
def _outputs_and_grads(core, x, others, training):
    variables = core.trainable_variables
    with tf.GradientTape() as tape:
        out = core(x, training=training)
        loss = tf.reduce_sum(tf.gather(_probe_loss(out), others))
    grads = tape.gradient(loss, _local(variables), unconnected_gradients=tf.UnconnectedGradients.ZERO)
    flat = tf.concat([tf.reshape(tf.cast(o, tf.float32), [tf.shape(o)[0], -1]) for o in tf.nest.flatten(out)], 1)
    return tf.gather(flat, others).numpy(), [tf.convert_to_tensor(g).numpy() for g in grads]


def _close(a, b, rtol=1e-5) -> bool:
    return bool(np.all(np.abs(a - b) <= rtol * (1.0 + np.abs(a))))


def independence_problem(core, x=None, rows: Optional[Sequence[int]] = None) -> Optional[str]:
    """Why one example of a batch can change another's loss or gradient (``None`` when the probe finds none).

    Each example ``j`` in ``rows`` (default: every example of the probe batch) is replaced in turn and the other
    examples' outputs and loss gradient compared: a layer that feeds only one row into another (row 0 gets the last
    row) is found whichever rows it pairs. The probe runs in training mode; when the model is stochastic there
    (dropout: two passes on the same batch differ) it runs with ``tf.random`` reseeded before each pass.
    """
    x = probe_batch(core) if x is None else x
    if x is None:
        return None
    n = int(tf.shape(tf.nest.flatten(x)[0])[0])
    rows = [int(j) for j in (range(n) if rows is None else rows)]
    snap = _snapshot(core)
    seeded = False

    def run(inputs, others):
        try:
            if not seeded:  # reseeding clears TF's eager kernel cache: only for models random in training mode
                return _outputs_and_grads(core, inputs, others, True)
            with _probe_seed(1234):  # identical dropout masks for both passes (eager op seeds restart)
                return _outputs_and_grads(core, inputs, others, True)
        finally:
            _restore(snap)

    def same(a, b):
        return _close(a[0], b[0], 1e-6) and all(_close(u, v, 1e-6) for u, v in zip(a[1], b[1]))

    head = [k for k in range(n) if k != rows[0]]
    first = run(x, head)
    if not same(first, run(x, head)):
        seeded = True
        first = run(x, head)
    stochastic = seeded and not same(first, run(x, head))
    for j in rows:
        others = [k for k in range(n) if k != j]
        x2 = _replace_row(x, j, seed=11)
        if stochastic:  # random even with a reseed: the probe in inference mode
            problem = _deterministic_problem(core, x, x2, others, snap, j)
        else:
            base, base_g = first if j == rows[0] else run(x, others)
            changed, changed_g = run(x2, others)
            problem = _compare(base, changed, base_g, changed_g, j, n)
        if problem:
            return problem
    return None


def _deterministic_problem(core, x, x2, others, snap, j) -> Optional[str]:
    """Fallback for models random in training mode even with a reseed: the probe in inference mode."""
    try:
        base, base_g = _outputs_and_grads(core, x, others, False)
        changed, changed_g = _outputs_and_grads(core, x2, others, False)
    finally:
        _restore(snap)
    return _compare(base, changed, base_g, changed_g, j, len(others) + 1)


def _compare(base, changed, base_g, changed_g, j, n) -> Optional[str]:
    if not _close(base, changed):
        d = float(np.max(np.abs(base - changed)))
        return (f"changing example {j} of a {n}-row probe batch changed the outputs of the other examples (by up "
                f"to {d:.3g}): a layer mixes examples within a batch (e.g. subtracts a batch mean), so per-example "
                "clipping cannot bound one example's influence")
    if not all(_close(a, b) for a, b in zip(base_g, changed_g)):
        return (f"changing example {j} of a {n}-row probe batch changed the gradient of the other examples' loss: "
                "a layer mixes examples within a batch in its gradient, so per-example clipping cannot bound one "
                "example's influence")
    return None


# -- 3. ghost exactness ------------------------------------------------------------------------------------------
def ghost_exactness_problem(core, x=None) -> Optional[str]:
    """Why ghost norms differ from the per-example loop on a probe batch (``None`` when they agree within
    :data:`EXACTNESS_RTOL`)."""
    x = probe_batch(core) if x is None else x
    if x is None:
        return "the core's inputs are unknown, so ghost norms cannot be checked against the per-example loop"
    try:
        foreign = foreign_weight_uses(core, x)
        if foreign:
            return ("the traced forward pass uses weights outside the layer that owns them: " + ", ".join(foreign)
                    + " (tied weights), so ghost norms would miss part of their gradient")
        return _exactness(core, x)
    except Exception as e:  # noqa: BLE001 - not shown exact: the per-example path
        return f"the ghost-exactness probe failed ({type(e).__name__}: {_last_line(e)})"


def _exactness(core, x) -> Optional[str]:
    variables = core.trainable_variables
    snap = _snapshot(core)
    try:
        _, _, _, norms = ghost.ghost_clip(core, x, _probe_loss, 1.0, variables)
        ghost_norms = norms.numpy().astype(np.float64)
        rows = len(ghost_norms)
        loop = []
        for i in range(rows):
            xi = tf.nest.map_structure(lambda t: t[i:i + 1], x)
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(_probe_loss(core(xi, training=True)))
            grads = tape.gradient(loss, _local(variables), unconnected_gradients=tf.UnconnectedGradients.ZERO)
            loop.append(np.sqrt(sum(float(tf.reduce_sum(tf.square(tf.cast(tf.convert_to_tensor(g), tf.float64))))
                                    for g in grads)))
    finally:
        _restore(snap)
    loop = np.array(loop)
    err = np.abs(ghost_norms - loop) / np.maximum(loop, 1e-12)
    if float(err.max()) <= EXACTNESS_RTOL:
        return None
    k = int(err.argmax())
    return (f"ghost per-example norms differ from the per-example loop on a probe batch (example {k}: ghost "
            f"{ghost_norms[k]:.6g} vs loop {loop[k]:.6g}, relative error {err[k]:.2g} > {EXACTNESS_RTOL:g}): "
            "some weights are used outside the layer that owns them (tied through a Lambda/tf.matmul, a tied "
            "embedding)")


def foreign_weight_uses(core, x=None) -> List[str]:
    """Trainable weights of ghost-supported layers that the traced forward pass uses outside their owner's call.

    Static (read from the graph, so a use gated on the input, which a random probe batch does not trigger, is
    found too): the forward pass is traced with each supported layer's ``call`` marking the graph ops it creates;
    any other op that consumes such a layer's variable (a ``Lambda`` doing ``tf.matmul`` on its kernel, a
    ``tf.cond`` branch that does) means ghost norms would miss part of that weight's gradient.
    """
    x = probe_batch(core) if x is None else x
    if x is None:
        return []
    leaves = ghost.trainable_leaves(core)
    inside: Dict[int, set] = {}

    def trace(t):
        graph = tf.compat.v1.get_default_graph()
        saved = []
        for layer in leaves:
            orig = type(layer).call.__get__(layer) if "call" not in layer.__dict__ else layer.__dict__["call"]
            saved.append((layer, layer.__dict__.get("call")))

            def call(*a, _orig=orig, _layer=layer, **k):
                start = len(graph.get_operations())
                out = _orig(*a, **k)
                inside.setdefault(id(_layer), set()).update(op.name for op in graph.get_operations()[start:])
                return out

            object.__setattr__(layer, "call", call)
        try:
            return core(t, training=True)
        finally:
            for layer, prev in saved:
                if prev is None:
                    object.__delattr__(layer, "call")
                else:
                    object.__setattr__(layer, "call", prev)

    snap = _snapshot(core)
    try:
        cf = tf.function(trace).get_concrete_function(x)
    finally:
        _restore(snap)
    owner = {}
    for layer in leaves:
        for v in layer.trainable_weights:
            for handle in _handles(v):
                owner[id(handle)] = (layer, v)
    found = set()
    for external, internal in cf.graph.captures:
        hit = owner.get(id(external))
        if hit is None:
            continue
        layer, v = hit
        allowed = inside.get(id(layer), set())
        for op in internal.consumers():
            if op.name not in allowed:
                found.add(f"{v.name!r} of {layer.name!r} (used by op {op.name!r})")
    return sorted(found)


# -- the decisions -----------------------------------------------------------------------------------------------
def state_problems(model, exclude=()) -> List[str]:
    """Problems from probes 1 and 2 for ``model`` (a ResponsibleModel or a core); empty when admitted.

    Args:
        exclude: names of layers already reported (e.g. BatchNormalization, found by type), not listed twice.
    """
    core = _core(model)
    x = probe_batch(core)
    if x is None:
        if not core.built or not core.variables:
            return [f"the core {core.name!r} has not been built and its inputs are unknown, so tfresp cannot probe "
                    "it; remedy: call it once on a batch (model(x[:1])) before making it private"]
        return [f"the inputs of the core {core.name!r} are unknown (not a functional model and never called on a "
                "batch of tensors), so tfresp cannot probe it; remedy: call it once on a batch (model(x[:1])) or "
                "build it with the functional API"]
    try:
        return _state_problems(model, core, x, exclude)
    except Exception as e:  # noqa: BLE001 - a model tfresp cannot probe is not admitted on trust
        return [f"tfresp could not probe the core {core.name!r} on a synthetic batch ({type(e).__name__}: "
                f"{_last_line(e)}), so it cannot check what the training step writes "
                "or whether examples mix; remedy: make the model callable on a batch of its declared input shape "
                "and dtype (integer inputs get ids 0-4, unknown lengths 16)"]


def _state_problems(model, core, x, exclude) -> List[str]:
    problems = []
    written, unknown, _ = assigned_variables(model, x)
    owners = [o for o in _owner_names(core, written) if o.split("'")[1] not in exclude]
    if owners:
        problems.append("the traced training step writes " + ", ".join(owners) + " (state computed from the data "
                        "and released with the model outside the clipped and noised gradient, even when gated on the "
                        "input or a counter); remedy: freeze the layer (layer.trainable = False), remove the update, "
                        "or make it a trainable weight")
    if unknown:
        problems.append("the traced training step writes " + ", ".join(sorted(set(unknown))) + " (a print, a Python "
                        "call (tf.py_function), a summary, a file, a table or other state outside the model's "
                        "variables receives values computed from the private rows outside the clipped and noised "
                        "gradient); remedy: remove the update or output from the model's call")
    added = added_loss_problem(core, x)
    if added:
        problems.append(added)
    mixing = independence_problem(core, x)
    if mixing:
        problems.append(mixing + "; remedy: remove the batch-level operation (use LayerNormalization for a "
                                 "normalisation)")
    return problems


def _added_losses(core, x) -> List[float]:
    with _probe_seed(1234):  # the same dropout masks for both batches
        core(x, training=True)
    return [float(tf.reduce_sum(tf.cast(loss, tf.float64))) for loss in core.losses]


def added_loss_problem(core, x) -> Optional[str]:
    """Why a loss the model adds itself (``add_loss``, evaluated in ``model.losses``) is not a weight penalty.

    DP-SGD adds the gradient of ``model.losses`` after the noise, as a data-independent regulariser (weight decay):
    a term whose value changes with the batch (a statistic of the activations, a callable closing over the last
    batch) is a batch-level term outside per-example clipping. Measured: the values after a forward pass on two
    different probe batches must be equal.
    """
    snap = _snapshot(core)
    try:
        first = _added_losses(core, x)
        second = _added_losses(core, _replace_row(x, 0, seed=13))
    finally:
        _restore(snap)
    if len(first) == len(second) and _close(np.array(first), np.array(second), 1e-6):
        return None
    return ("a loss the model adds itself (add_loss, model.losses) depends on the batch (its value changed with "
            "one probe example), so it is a batch-level, data-dependent term outside per-example clipping; remedy: "
            "return it as part of the per-example loss, or keep only weight penalties (kernel_regularizer) in "
            "add_loss")


def needs_loop(model) -> Optional[str]:
    """Why per-example gradients need a loop instead of ``tf.vectorized_map`` (``None``: they do not)."""
    core = _core(model)
    x = probe_batch(core)
    if x is None:
        return None
    snap = _snapshot(core)
    try:
        graph = tf.function(lambda t: core(t, training=True)).get_concrete_function(x).graph.as_graph_def()
    except Exception:  # noqa: BLE001 - cannot tell: the vectorized path stays (check_model probed the model)
        return None
    finally:
        _restore(snap)
    scan = _WriteScan(graph.library)
    scan.scan(graph.node, {n.name: n for n in graph.node})
    for name in list(scan.library):
        scan.function_writes(name)
    if scan.has_while:
        return ("the training forward pass contains a tf.while_loop (e.g. a recurrent layer), whose gradient "
                "tf.vectorized_map cannot vectorise: per-example gradients are computed in a loop (exact, slower)")
    return None


__all__ = ["added_loss_problem", "assigned_variables", "foreign_weight_uses", "independence_problem",
           "ghost_exactness_problem",
           "needs_loop",
           "probe_batch", "state_problems"]

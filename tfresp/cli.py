"""Command line: ``tfresp fit CONFIG [--set k=v]... [--out DIR] [--overwrite] [--resume] [--quiet] [--verbose]``.

Also ``python -m tfresp``. ``tfresp configs`` lists the shipped configs (``tfresp fit quickstart``).

Exit codes: 0 ok; 1 a gate failed; 2 bad input (config, data, paths, checkpoints); 3 internal error.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true",
                        help="show TensorFlow/absl/library logs and warnings (hidden by default)")
    from tfresp import __version__

    p = argparse.ArgumentParser(prog="tfresp", description="Responsible training for Keras/TensorFlow.",
                                epilog="Exit codes: 0 ok; 1 a release gate failed; 2 bad input (config, data, "
                                       "paths, checkpoints); 3 internal error.")
    p.add_argument("--version", action="version", version=f"tfresp {__version__}",
                   help="print tfresp's version and exit")
    sub = p.add_subparsers(dest="command", required=True)
    _add = sub.add_parser
    sub.add_parser = lambda *a, **k: _add(*a, parents=[common], **k)  # --verbose on every command
    f = sub.add_parser("fit", help="train, audit, export and report")
    f.add_argument("config", help="YAML config file, or the name of a shipped config (`tfresp configs` lists "
                                  "them, e.g. quickstart)")
    f.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (VALUE is YAML); repeatable")
    f.add_argument("--out", default=None, help="run directory (default runs/<name>)")
    f.add_argument("--overwrite", action="store_true", help="replace an existing run directory (only after the new run succeeded)")
    f.add_argument("--resume", action="store_true", help="resume an interrupted run from the run directory's checkpoints")
    f.add_argument("--quiet", action="store_true",
                   help="no progress bar and no 'tfresp: <phase> ...' lines (results and errors still print)")
    r = sub.add_parser("report", help="re-render a run's report from report.json")
    r.add_argument("run", help=_RUN_HELP)
    r.add_argument("--check", action="store_true",
                   help="alias of `tfresp verify RUN`: recompute every number from the run's artifacts (writes "
                        "nothing); exit 2 on a mismatch or if the run cannot be checked, exit 1 if a gate fails")
    r.add_argument("--data", default=None, help="with --check: the run's test data file when it was moved")
    r.add_argument("--gate", dest="gates", action="append", default=[], metavar="GATE",
                   help="extra gate checked (not written), e.g. 'accuracy >= 0.8'; repeatable")
    v = sub.add_parser("verify", help="recompute every number of a run from its artifacts and compare (writes "
                                      "nothing); exit 2 on a mismatch")
    v.add_argument("run", help=_RUN_HELP)
    v.add_argument("--data", default=None, help="the run's test file (or data file) when it is not found")
    v.add_argument("--gate", dest="gates", action="append", default=[], metavar="GATE",
                   help="extra gate checked, e.g. 'accuracy >= 0.8'; repeatable")
    v.add_argument("--key", default=None, help="PEM Ed25519 public key the run must be signed with")
    g = sub.add_parser("sign", help="sign a run's report.json (and its artifact manifest) with Ed25519")
    g.add_argument("run", help=_RUN_HELP)
    g.add_argument("--key", required=True, help="PEM Ed25519 private key (password-less)")
    c = sub.add_parser("compare", help="compare two runs side by side")
    c.add_argument("run_a", help="first run directory (the baseline)")
    c.add_argument("run_b", help="second run directory")
    c.add_argument("--out", default=".", help="directory for compare.md / compare.html (default: current)")
    a = sub.add_parser("audit", help="re-run audits on a finished run")
    a.add_argument("run", help=_RUN_HELP)
    a.add_argument("--privacy", action="store_true", help="re-run the privacy audit (membership inference)")
    a.add_argument("--fairness", action="store_true", help="re-run the fairness audit")
    a.add_argument("--robustness", action="store_true", help="re-run the robustness audit")
    a.add_argument("--data", default=None, help="the run's data file when it is not found")
    e = sub.add_parser("explain", help="explain predictions of a finished run")
    e.add_argument("run", help=_RUN_HELP)
    e.add_argument("--input", default=None, help="raw text to explain (text runs)")
    e.add_argument("--row", type=int, default=None, help="row of the run's test split to explain")
    e.add_argument("--seed", type=int, default=0, help="LIME seed (same seed, same explanation)")
    e.add_argument("--num-samples", type=int, default=1000, help="LIME neighbourhood size")
    e.add_argument("--top-k", type=int, default=5, help="features shown and used for the stability score")
    e.add_argument("--json", action="store_true", help="print the explanation as JSON")
    e.add_argument("--data", default=None, help="the run's data file when it is not found")
    x = sub.add_parser("export", help="export a finished run")
    x.add_argument("run", help=_RUN_HELP)
    x.add_argument("--tflite", choices=["int8", "float16", "float", "dynamic"], action="append", default=[],
                   help="add a TFLite variant of the served model; repeatable")
    from tfresp.commands.monitor import add_parser as _monitor_parser

    _monitor_parser(sub)
    sub.add_parser("configs", help="list the configs shipped with tfresp (usable by name: tfresp fit quickstart)")
    for sp in sub.choices.values():  # commands defined elsewhere: a run directory argument gets the usual help
        for action in sp._actions:
            if action.help is None and action.dest == "run":
                action.help = _RUN_HELP
    return p


_RUN_HELP = "run directory written by `tfresp fit`"


def _cmd_configs(args) -> int:
    from tfresp import configs

    rows = [configs.summary(n) for n in configs.names()]
    if not rows:
        print("tfresp: no shipped configs found", file=sys.stderr)
        return 2
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['description']}  [data: {r['data']}]")
    print(f"\n{len(rows)} configs in {configs.directory()}; run one with `tfresp fit NAME` "
          "(copy the file to edit it)")
    return 0


def _cmd_fit(args) -> int:
    from tfresp.api import fit
    from tfresp.errors import GateFailedError

    result = fit(args.config, out=args.out, overwrite=args.overwrite, quiet=args.quiet, resume=args.resume,
                 overrides=args.overrides)
    ev = result.metrics
    print(f"tfresp: run written to {result.run_dir}")
    if ev:
        raw = ev.get("raw_model")
        print("tfresp: test" + (" (served, post-processed) " if raw else " ")
              + ", ".join(f"{k}={ev[k]:.4f}" for k in ("accuracy", "balanced_accuracy", "f1", "roc_auc")
                          if isinstance(ev.get(k), float))
              + (f"; raw model accuracy={raw['accuracy']:.4f}" if raw else ""))
        for w in result.report.get("warnings") or []:
            if w.get("code", "").startswith("degenerate_"):
                print(f"tfresp: WARNING {w['message']}")
    priv = result.report.get("privacy") or {}
    if priv.get("epsilon") is not None:
        print(f"tfresp: privacy epsilon={priv['epsilon']:.4f} delta={priv['delta']:.3g}")
    gates = result.report.get("gates")
    if gates and not gates["passed"]:
        from tfresp.report.gates import failure_lines

        for line in failure_lines(gates):
            print(line)
        raise GateFailedError(f"{len(gates['failed'])} of {gates['count']} release gates failed")
    return 0


def _dispatch(args) -> int:
    if args.command == "fit":
        return _cmd_fit(args)
    if args.command == "configs":
        return _cmd_configs(args)
    import importlib

    module = importlib.import_module(f"tfresp.commands.{args.command}")
    return module.run(args)


_MAX_MESSAGE = 4000  # characters of one error line (a hostile input must not print megabytes)


def main(argv=None) -> int:
    """Run the CLI. Called without ``argv`` (the console script, ``python -m tfresp.cli``) it also filters
    TensorFlow's native start-up noise from stderr unless ``--verbose`` (see :mod:`tfresp._quiet`)."""
    import tfresp  # noqa: F401  (sets the Keras 2 switches first)
    from tfresp import _quiet

    args = _parser().parse_args(argv)
    _quiet.configure(getattr(args, "verbose", False))
    restore = _quiet.filter_native_stderr() if argv is None and not args.verbose else None
    if argv is None:
        _interrupt_once()
    try:
        code = _main(args)
    finally:
        if restore is not None:
            restore()
    if argv is None and code == 130:
        # interrupted, and the run has cleaned up: leave now. Interpreter shutdown would run TensorFlow's
        # finalizers, where a pending Ctrl-C prints "Exception ignored ... KeyboardInterrupt" or kills the process
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    return code


def _interrupt_once() -> None:
    """The first Ctrl-C interrupts (KeyboardInterrupt: the run cleans up, exit 130); later ones are ignored, so a
    repeated Ctrl-C cannot break the cleanup or print "Exception ignored ... KeyboardInterrupt" at shutdown."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("tfresp: interrupted; cleaning up (further Ctrl-C is ignored)", file=sys.stderr, flush=True)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)


def _main(args) -> int:
    from tfresp.errors import TfrespError

    try:
        code = _dispatch(args)
    except TfrespError as exc:
        text = " ".join(str(exc).splitlines())
        if len(text) > _MAX_MESSAGE:
            text = text[:_MAX_MESSAGE] + f"... ({len(text) - _MAX_MESSAGE} more characters)"
        print(f"tfresp: error: {text}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("tfresp.commands"):
            print(f"tfresp: error: command {args.command!r} is not available in this version", file=sys.stderr)
            return 2
        traceback.print_exc()
        return 3
    except KeyboardInterrupt:
        print("tfresp: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `tfresp configs | head`: the reader left; say nothing more
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception:  # an internal error: show the traceback, exit 3
        traceback.print_exc()
        print("tfresp: internal error (exit 3); please report it with the traceback above", file=sys.stderr)
        return 3
    return code or 0


if __name__ == "__main__":
    sys.exit(main())

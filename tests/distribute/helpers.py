"""Run tfresp in fresh processes: N logical CPUs (MirroredStrategy) or a local multi-worker cluster."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).resolve().parent / "_run.py"


def _env(**extra):
    e = dict(os.environ)
    e.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="")
    e.pop("TF_CONFIG", None)
    e.update(extra)
    return e


def _parse(proc):
    out = proc.stdout if isinstance(proc.stdout, str) else proc.stdout.decode()
    err = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode()
    assert proc.returncode == 0, err[-3000:]
    line = next(ln for ln in out.splitlines() if ln.startswith("@@REPORT@@"))
    return json.loads(line[len("@@REPORT@@"):])


def run_local(cfg: dict, out: Path, logical_cpus: int = 1, timeout: int = 400) -> dict:
    return start_local(cfg, out, logical_cpus, timeout).result()


class Started:
    """A ``_run.py`` process started and not yet waited for: a test runs its reference (single-device) process
    beside the distributed one, so the two TensorFlow start-ups overlap. ``result()`` waits (once) and parses."""

    def __init__(self, args, timeout):
        self._proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                                      cwd=REPO)
        self._timeout, self._result = timeout, None

    def result(self) -> dict:
        if self._result is None:
            try:
                out, err = self._proc.communicate(timeout=self._timeout)
            finally:
                if self._proc.poll() is None:
                    self._proc.kill()
            self._result = _parse(subprocess.CompletedProcess(self._proc.args, self._proc.returncode, out, err))
        return self._result


def start_local(cfg: dict, out: Path, logical_cpus: int = 1, timeout: int = 400) -> Started:
    return Started([sys.executable, str(RUNNER), json.dumps(cfg), str(out), str(logical_cpus)], timeout)


def free_ports(n: int):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def run_workers(cfg: dict, outdir: Path, workers: int = 2, timeout: int = 400, raw: bool = False, runner=None,
                **env) -> list:
    """Start ``workers`` local processes forming one MultiWorkerMirroredStrategy cluster on 127.0.0.1.

    Returns each worker's report, or with ``raw=True`` each ``(returncode, stdout, stderr)``; ``runner``: another
    script than ``_run.py`` (same arguments); ``env``: extra environment variables of the workers.
    """
    addrs = [f"127.0.0.1:{p}" for p in free_ports(workers)]
    procs = []
    for i in range(workers):
        tf_config = json.dumps({"cluster": {"worker": addrs}, "task": {"type": "worker", "index": i}})
        procs.append(subprocess.Popen([sys.executable, str(runner or RUNNER), json.dumps(cfg), str(outdir / f"w{i}"),
                                       "1"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=_env(TF_CONFIG=tf_config, **env), cwd=REPO))
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            if raw:
                results.append((p.returncode, out, err))
                continue
            results.append(_parse(subprocess.CompletedProcess(p.args, p.returncode, out, err)))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return results

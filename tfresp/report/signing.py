"""Who produced a run: an Ed25519 signature of its report.json (``tfresp sign`` / ``tfresp verify --key``).

report.json holds the manifest (the sha256 of every artifact), so signing its bytes signs the whole run. The
signature is written beside it as ``signature.json`` (algorithm, the signer's public key and key id, the
report's sha256, the signature); it is not in the manifest. ``tfresp verify`` checks it against the public key
the auditor trusts (``--key PUB``, a PEM file); without ``--key`` it only checks that the signature matches the
key it names, which says nothing about who holds that key.

Example (a key pair: ``openssl genpkey -algorithm ed25519 -out key.pem`` and
``openssl pkey -in key.pem -pubout -out key.pub``)::

    tfresp sign runs/quickstart --key key.pem
    tfresp verify runs/quickstart --key key.pub
"""
from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import List, Optional, Tuple

from tfresp.errors import DataError

SIGNATURE_FILE = "signature.json"


def _raw_public(public_key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(raw_public: bytes) -> str:
    return hashlib.sha256(raw_public).hexdigest()[:16]


def _load_key(path, private: bool):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    p = Path(path).expanduser()
    what = "private" if private else "public"
    if not p.is_file():
        raise DataError(f"`--key`: file not found. Received: --key={str(path)!r}. Remedy: give a PEM Ed25519 {what} "
                        "key file")
    try:
        data = p.read_bytes()
        key = (serialization.load_pem_private_key(data, password=None) if private
               else serialization.load_pem_public_key(data))
    except (ValueError, TypeError) as exc:
        raise DataError(f"`--key`: not a password-less PEM {what} key ({str(exc).splitlines()[0][:120]}). Received: "
                        f"--key={str(path)!r}. Remedy: `openssl genpkey -algorithm ed25519 -out key.pem`"
                        + ("" if private else " then `openssl pkey -in key.pem -pubout -out key.pub`")) from None
    expected = ed25519.Ed25519PrivateKey if private else ed25519.Ed25519PublicKey
    if not isinstance(key, expected):
        raise DataError(f"`--key`: the key is {type(key).__name__}, not Ed25519. Received: --key={str(path)!r}. "
                        "Remedy: `openssl genpkey -algorithm ed25519 -out key.pem`")
    return key


def sign(run_dir, key_path) -> dict:
    """Sign ``run_dir/report.json`` with the Ed25519 private key in ``key_path``; write ``signature.json``."""
    from tfresp.run.io import atomic_write

    run_dir = Path(run_dir)
    report = run_dir / "report.json"
    if not run_dir.is_dir() or not report.is_file() or report.is_symlink():
        raise DataError(f"Invalid value for `RUN`: {str(run_dir)!r} is not a finished tfresp run (no report.json)")
    key = _load_key(key_path, private=True)
    data = report.read_bytes()
    raw = _raw_public(key.public_key())
    sig = {"algorithm": "ed25519", "signed_file": "report.json",
           "report_sha256": hashlib.sha256(data).hexdigest(),
           "public_key": base64.b64encode(raw).decode(), "key_id": key_id(raw),
           "signature": base64.b64encode(key.sign(data)).decode()}
    atomic_write(run_dir / SIGNATURE_FILE, json.dumps(sig, indent=1))
    return sig


def check(run_dir, public_key_path: Optional[str]) -> Tuple[int, List[str], List[str]]:
    """``(checked, problems, notes)`` of the run's signature against ``public_key_path`` (None: its own key)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ed25519

    run_dir = Path(run_dir)
    path = run_dir / SIGNATURE_FILE
    trusted = _load_key(public_key_path, private=False) if public_key_path is not None else None
    if not path.is_file():
        if trusted is not None:
            return 1, [f"signature: the run is not signed (no {SIGNATURE_FILE}), so it cannot be shown to come from "
                       f"the holder of --key {public_key_path}. Remedy: ask the producer for `tfresp sign RUN`"], []
        return 0, [], []
    try:
        sig = json.loads(path.read_text())
        raw = base64.b64decode(sig["public_key"])
        signature = base64.b64decode(sig["signature"])
    except (ValueError, KeyError, TypeError):
        return 1, [f"signature: {SIGNATURE_FILE} is not a tfresp signature"], []
    problems = []
    if trusted is not None and _raw_public(trusted) != raw:
        problems.append(f"signature.key_id: the run was signed by key {key_id(raw)}, not by --key "
                        f"{public_key_path} (key {key_id(_raw_public(trusted))})")
    try:
        ed25519.Ed25519PublicKey.from_public_bytes(raw).verify(signature, (run_dir / "report.json").read_bytes())
    except (InvalidSignature, ValueError):
        problems.append(f"signature: report.json changed after it was signed by key {key_id(raw)} (the signature "
                        "does not match its bytes)")
    notes = []
    if not problems:
        notes.append(f"report.json is signed by key {key_id(raw)}" + (
            f" (= --key {public_key_path})" if trusted is not None else
            "; pass --key PUB to check that this is the producer's key"))
    return 2 if trusted is not None else 1, problems, notes


def record(run_dir, key, found) -> None:
    """:func:`check` into ``found`` (``tfresp verify``'s findings: ``checked``, ``mismatches``, ``notes``,
    ``cannot``), for central and cross-silo runs alike."""
    checked, problems, notes = check(run_dir, key)
    found.checked += checked
    found.mismatches.extend(problems)
    found.notes.extend(notes)
    if not checked:
        found.cannot.append("who produced the run (not signed; the producer can run `tfresp sign RUN --key KEY`)")

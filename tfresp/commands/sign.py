"""``tfresp sign RUN --key KEY``: sign a finished run's report.json (and so its manifest) with Ed25519.

See :mod:`tfresp.report.signing`; ``tfresp verify RUN --key PUB`` checks the signature.
"""
from __future__ import annotations


def run(args) -> int:
    from tfresp.report.signing import SIGNATURE_FILE, sign

    sig = sign(args.run, args.key)
    print(f"tfresp: signed {args.run}/report.json with key {sig['key_id']} -> {args.run}/{SIGNATURE_FILE}")
    return 0

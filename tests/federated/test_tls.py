"""Certificates generated for a local TLS deployment: private folder and keys, a server certificate for
127.0.0.1/localhost that verifies against the run's CA (and against nothing else), SuperNode keys Flower accepts."""
import socket
import ssl
import stat
import threading

import pytest

from tfresp.federated.deploy import make_certificates


def _handshake(certs, client_ctx, host="127.0.0.1"):
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(certs["cert"]), str(certs["key"]))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    errors = []

    def serve():
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as s:
                s.recv(1)
        except (ssl.SSLError, OSError) as exc:
            errors.append(exc)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=host) as s:
                s.sendall(b"x")
                return s.version()
    finally:
        t.join(10)
        listener.close()


def test_generated_certificates(tmp_path):
    certs = make_certificates(tmp_path / "certs", nodes=2)
    assert stat.S_IMODE((tmp_path / "certs").stat().st_mode) == 0o700
    for private in [certs["key"]] + [k for k, _ in certs["node_keys"]]:
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    trusting = ssl.create_default_context(cafile=str(certs["ca"]))
    assert _handshake(certs, trusting, "127.0.0.1").startswith("TLS")
    assert _handshake(certs, trusting, "localhost").startswith("TLS")
    with pytest.raises(ssl.SSLCertVerificationError):  # the system roots do not know the run's CA
        _handshake(certs, ssl.create_default_context())
    other = make_certificates(tmp_path / "other", nodes=1)
    with pytest.raises(ssl.SSLCertVerificationError):  # nor does another run's CA
        _handshake(certs, ssl.create_default_context(cafile=str(other["ca"])))
    with pytest.raises(ssl.SSLCertVerificationError):  # the certificate names only 127.0.0.1 / localhost
        _handshake(certs, trusting, "example.org")
    with pytest.raises(FileExistsError):  # never reuses or overwrites a folder
        make_certificates(tmp_path / "certs", nodes=1)


def test_supernode_keys_are_what_flower_registers(tmp_path):
    pytest.importorskip("flwr")
    from flwr.cli.supernode.register import try_load_public_key

    certs = make_certificates(tmp_path / "certs", nodes=2)
    keys = [try_load_public_key(pub) for _, pub in certs["node_keys"]]
    assert len(set(keys)) == 2 and all(keys)

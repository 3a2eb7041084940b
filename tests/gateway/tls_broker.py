"""A Mosquitto with a second listener that wants TLS, a client certificate and a password.

The test suite's :class:`tests.services.MosquittoBroker` keeps its plain listener (its readiness
check speaks plain MQTT); this adds the TLS listener with per-listener settings. The certificates are
made here with ``cryptography``: a CA, a server certificate for 127.0.0.1, a client certificate.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.services import MosquittoBroker, free_port


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> tuple[Path, Path]:
    key_path, cert_path = path.with_suffix(".key"), path.with_suffix(".pem")
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def make_certificates(directory: Path) -> dict[str, Path]:
    now = dt.datetime.now(dt.UTC)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aquami test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    files: dict[str, Path] = {}
    _, files["ca"] = _write(directory / "ca", ca_key, ca)
    for name, san in (("server", x509.IPAddress(ipaddress.ip_address("127.0.0.1"))), ("client", x509.DNSName("gw"))):
        key = _key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        files[f"{name}_key"], files[f"{name}_cert"] = _write(directory / name, key, cert)
    return files


class TlsMosquitto(MosquittoBroker):
    def __init__(self, directory: Path, username: str, password: str):
        super().__init__()
        self.tls_port = free_port()
        self.files = make_certificates(directory)
        self.password_file = directory / "passwords"
        self.password_file.write_text("")
        subprocess.run(["mosquitto_passwd", "-b", str(self.password_file), username, password], check=True)

    def _write_config(self) -> Path:
        conf = super()._write_config()
        f = self.files
        conf.write_text(
            "per_listener_settings true\n"
            + conf.read_text()
            + f"listener {self.tls_port} 127.0.0.1\n"
            + "allow_anonymous false\n"
            + f"password_file {self.password_file}\n"
            + f"cafile {f['ca']}\ncertfile {f['server_cert']}\nkeyfile {f['server_key']}\n"
            + "require_certificate true\n"
        )
        return conf

"""Certificates for the local control plane, made with the ``openssl`` command line.

One CA signs everything: the apiserver's serving certificate, a client certificate per
component (the Common Name is the Kubernetes user, the Organization its group), and the
kubelet's serving certificate. A separate RSA key pair signs service-account
tokens. Files are only created when missing, so a restarted cluster keeps trusting the
tokens and kubeconfigs it handed out before.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

CA_SUBJECT = "/CN=lime-task-dev-ca"
DAYS = "3650"


class PkiError(RuntimeError):
    pass


@dataclass(frozen=True)
class CertSpec:
    """One leaf certificate: file stem, subject and the uses it is allowed."""

    name: str
    common_name: str
    organization: str | None = None
    server: bool = False
    client: bool = False
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()

    @property
    def subject(self) -> str:
        org = f"/O={self.organization}" if self.organization else ""
        return f"{org}/CN={self.common_name}"

    def extensions(self) -> str:
        """The openssl extension section for this certificate (pure, unit-testable)."""
        usages = [u for u, on in (("serverAuth", self.server), ("clientAuth", self.client)) if on]
        if not usages:
            raise PkiError(f"certificate {self.name!r} must be for a server, a client or both")
        lines = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage=" + ",".join(usages),
        ]
        alt = [f"DNS:{d}" for d in self.dns_names] + [f"IP:{i}" for i in self.ip_addresses]
        if alt:
            lines.append("subjectAltName=" + ",".join(alt))
        return "\n".join(lines) + "\n"


def _openssl(*args: str) -> None:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise PkiError(f"openssl {' '.join(args[:2])} failed: {proc.stderr.strip()}")


def ensure_ca(pki: Path) -> None:
    pki.mkdir(parents=True, exist_ok=True)
    if (pki / "ca.crt").exists() and (pki / "ca.key").exists():
        return
    _openssl(
        "req", "-x509", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-keyout", str(pki / "ca.key"), "-out", str(pki / "ca.crt"), "-days", DAYS,
        "-subj", CA_SUBJECT,
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    )


def ensure_cert(pki: Path, spec: CertSpec) -> tuple[Path, Path]:
    crt, key = pki / f"{spec.name}.crt", pki / f"{spec.name}.key"
    if crt.exists() and key.exists():
        return crt, key
    csr, ext = pki / f"{spec.name}.csr", pki / f"{spec.name}.ext"
    ext.write_text(spec.extensions())
    _openssl(
        "req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-keyout", str(key), "-out", str(csr), "-subj", spec.subject,
    )
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"),
        "-CAcreateserial", "-days", DAYS, "-out", str(crt), "-extfile", str(ext),
    )
    csr.unlink()
    ext.unlink()
    return crt, key


def ensure_service_account_keys(pki: Path) -> None:
    """RSA pair: the apiserver signs tokens with the private key, verifies with the public."""
    if (pki / "sa.key").exists() and (pki / "sa.pub").exists():
        return
    _openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
    _openssl("rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))


def cert_specs(service_ip: str, node_name: str) -> list[CertSpec]:
    return [
        CertSpec(
            "apiserver", "kube-apiserver", server=True,
            dns_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                       "kubernetes.default.svc.cluster.local"),
            ip_addresses=("127.0.0.1", service_ip),
        ),
        # The apiserver presents this one to kubelet (kubectl logs).
        CertSpec("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters", client=True),
        CertSpec("admin", "lime-admin", "system:masters", client=True),
        CertSpec("controller-manager", "system:kube-controller-manager", client=True),
        CertSpec("scheduler", "system:kube-scheduler", client=True),
        # kubelet's identity: the Node authorizer limits it to its own node's objects.
        CertSpec("node", f"system:node:{node_name}", "system:nodes", client=True),
        CertSpec("kubelet-serving", f"system:node:{node_name}", "system:nodes", server=True,
                 dns_names=("localhost", node_name), ip_addresses=("127.0.0.1",)),
    ]


def ensure_pki(pki: Path, service_ip: str, node_name: str) -> None:
    ensure_ca(pki)
    ensure_service_account_keys(pki)
    for spec in cert_specs(service_ip, node_name):
        ensure_cert(pki, spec)

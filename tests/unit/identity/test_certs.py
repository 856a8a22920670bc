import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509

from bookstore.identity import Identity, certs, identities_of, identity_of, spiffe_id
from bookstore.settings import Settings, from_env

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def at(when: dt.datetime) -> certs.Clock:
    return lambda: when


def san(directory: Path, name: str) -> list[str]:
    cert = x509.load_pem_x509_certificate((directory / f"{name}.pem").read_bytes())
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(n.value) for n in ext]


def test_a_ca_and_a_certificate_per_service_with_spiffe_and_host_names(tmp_path: Path) -> None:
    settings = from_env(
        {"ORDER_QUEUE_ADDRESS": "order-queue:50054", "ORDER_EXECUTOR_ADDRESSES": "3=10.0.0.3:1"}
    )
    made = certs.ensure(tmp_path, identities_of(settings), at(NOW))
    assert made == [
        "ca",
        "orchestrator",
        "transaction-verification",
        "fraud-detection",
        "suggestions",
        "order-queue",
        "order-executor-3",
        "books-database-1",
        "books-database-2",
        "books-database-3",
        "payment",
        "launcher",
    ]
    assert san(tmp_path, "order-queue")[:2] == ["spiffe://bookstore/order-queue", "order-queue"]
    assert san(tmp_path, "order-executor-3")[:2] == [
        "spiffe://bookstore/order-executor/3",
        "10.0.0.3",
    ]
    assert {"localhost", "127.0.0.1"} <= set(san(tmp_path, "orchestrator"))
    for key in tmp_path.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate((tmp_path / "order-queue.pem").read_bytes())
    cert.verify_directly_issued_by(
        x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    )


def test_spiffe_ids_of_replicas_and_future_services() -> None:
    assert spiffe_id("order-executor", 3) == "spiffe://bookstore/order-executor/3"
    assert spiffe_id("books-database", 2) == "spiffe://bookstore/books-database/2"
    assert spiffe_id("payment") == "spiffe://bookstore/payment"
    assert identity_of(Settings(), "order-executor", 2).name == "order-executor-2"
    with pytest.raises(KeyError):
        identity_of(Settings(), "order-executor", 9)


def test_valid_certificates_are_reused(tmp_path: Path) -> None:
    ids = identities_of(Settings())
    certs.ensure(tmp_path, ids, at(NOW))
    before = {p.name: p.read_bytes() for p in tmp_path.glob("*.pem")}
    assert certs.ensure(tmp_path, ids, at(NOW + dt.timedelta(days=30))) == []
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.pem")} == before


def test_expiring_missing_or_changed_certificates_are_made_anew(tmp_path: Path) -> None:
    ids = identities_of(Settings())
    certs.ensure(tmp_path, ids, at(NOW))
    ca = (tmp_path / "ca.pem").read_bytes()
    # 70 of 90 days gone: every service certificate is renewed, the CA kept.
    renewed = certs.ensure(tmp_path, ids, at(NOW + dt.timedelta(days=70)))
    assert renewed == [i.name for i in ids]
    assert (tmp_path / "ca.pem").read_bytes() == ca

    (tmp_path / "suggestions.key").unlink()
    (tmp_path / "order-queue.pem").write_text("not a certificate")
    moved = [Identity(i.name, i.spiffe_id, ("queue.internal",)) if i.name == "launcher" else i
             for i in ids]  # fmt: skip
    assert certs.ensure(tmp_path, moved, at(NOW + dt.timedelta(days=71))) == [
        "suggestions",
        "order-queue",
        "launcher",
    ]
    assert "queue.internal" in san(tmp_path, "launcher")


def test_a_new_ca_makes_every_certificate_anew(tmp_path: Path) -> None:
    ids = identities_of(Settings())
    certs.ensure(tmp_path, ids, at(NOW))
    (tmp_path / "ca.key").unlink()  # the CA is rotated by deleting it
    assert certs.ensure(tmp_path, ids, at(NOW)) == ["ca", *[i.name for i in ids]]

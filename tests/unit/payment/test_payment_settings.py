"""The payment service's settings: its address and recovery interval."""

from __future__ import annotations

import pytest

from bookstore.settings import SERVICES, SettingsError, from_env


def test_defaults_and_overrides() -> None:
    assert "payment" in SERVICES
    default = from_env({})
    assert default.address_of("payment") == "127.0.0.1:50062"
    assert default.payment_recovery_interval_s == 1.0
    custom = from_env(
        {
            "PAYMENT_ADDRESS": "payment:50062",
            "PAYMENT_RECOVERY_INTERVAL_S": "0.5",
            "BOOKSTORE_BIND_HOST": "0.0.0.0",
        }
    )
    assert custom.bind_address("payment") == "0.0.0.0:50062"
    assert custom.payment_recovery_interval_s == 0.5


@pytest.mark.parametrize(
    ("name", "value"), [("PAYMENT_ADDRESS", "nowhere"), ("PAYMENT_RECOVERY_INTERVAL_S", "soon")]
)
def test_a_malformed_value_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        from_env({name: value})

"""Sealing and opening personal values; sealing whole events; what a forgotten customer reads as."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from contracts.catalog import OrderPlaced
from contracts.personal import personal_items, seal_personal_data
from contracts.return_samples import scenario_return
from contracts.samples import sample_order_placed
from events.personal_data import (
    ERASED,
    SHOWN,
    InMemoryKeyring,
    SealError,
    conceal,
    is_erased,
    is_sealed,
    open_value,
    open_with,
    seal,
    sealed_customer,
    sealed_customers,
)


async def test_a_sealed_value_opens_to_its_plain_text():
    keyring = InMemoryKeyring()
    sealed = await seal(keyring, "cus-1", "customer_email", "ada@example.com")
    assert is_sealed(sealed)
    assert "ada" not in sealed
    assert sealed_customer(sealed) == "cus-1"
    assert await open_value(keyring, sealed, "customer_email") == "ada@example.com"


async def test_the_same_value_seals_differently_each_time():
    keyring = InMemoryKeyring()
    first = await seal(keyring, "cus-1", "line1", "12 Analytical Way")
    assert first != await seal(keyring, "cus-1", "line1", "12 Analytical Way")


async def test_a_value_moved_to_another_field_does_not_open():
    keyring = InMemoryKeyring()
    sealed = await seal(keyring, "cus-1", "customer_email", "ada@example.com")
    with pytest.raises(SealError, match="sealed recipient of customer cus-1"):
        await open_value(keyring, sealed, "recipient")


async def test_a_value_under_another_customers_name_does_not_open():
    keyring = InMemoryKeyring()
    sealed = await seal(keyring, "cus-1", "customer_email", "ada@example.com")
    other_key = await keyring.key_for_sealing("cus-2")
    # The associated data names the customer: the other customer's key cannot open it.
    with pytest.raises(SealError):
        open_with(other_key, sealed, "customer_email")


async def test_a_forgotten_customers_values_read_as_erased():
    keyring = InMemoryKeyring()
    sealed = await seal(keyring, "cus-1", "customer_email", "ada@example.com")
    assert await keyring.forget("cus-1")
    assert not await keyring.forget("cus-1")
    assert await open_value(keyring, sealed, "customer_email") == ERASED


@pytest.mark.parametrize(
    "damaged",
    ["pii:v1:Y3VzLTE:AAAA", "pii:v1:Y3VzLTE:" + "A" * 60, "pii:v1:!!:AAAA", "pii:v1:"],
)
async def test_a_damaged_value_is_a_seal_error_not_a_crash(damaged: str):
    keyring = InMemoryKeyring()
    await keyring.key_for_sealing("cus-1")
    with pytest.raises(SealError):
        await open_value(keyring, damaged, "customer_email")


async def test_plain_values_of_events_written_before_sealing_open_as_themselves():
    assert await open_value(InMemoryKeyring(), "ada@example.com", "customer_email") == (
        "ada@example.com"
    )


async def test_sealing_an_order_seals_every_personal_field_and_nothing_else():
    keyring = InMemoryKeyring()
    plain = sample_order_placed(email="ada@example.com")
    sealed = await seal_personal_data(plain, keyring)
    assert sealed.personal_data == "sealed"
    assert all(is_sealed(v) for _, v in personal_items(sealed.model_dump()))
    assert {k for k, _ in personal_items(sealed.model_dump())} >= {
        "customer_email", "customer_name", "recipient", "line1"
    }  # fmt: skip
    assert sealed.shipping_address.city == plain.shipping_address.city
    assert sealed.customer_id == plain.customer_id
    assert sealed.items == plain.items
    assert await open_value(keyring, sealed.customer_email, "customer_email") == "ada@example.com"
    assert await seal_personal_data(sealed, keyring) is sealed


async def test_sealing_a_return_seals_its_email_and_pickup_address():
    keyring = InMemoryKeyring()
    sealed = await seal_personal_data(scenario_return("happy", "ord-1"), keyring)
    assert sealed.personal_data == "sealed"
    assert is_sealed(sealed.customer_email)
    assert is_sealed(sealed.pickup_address.line1)


def test_an_event_must_be_what_its_personal_data_says():
    plain = sample_order_placed()
    data = plain.model_dump()
    with pytest.raises(ValidationError, match="personal_data is sealed but"):
        OrderPlaced.model_validate({**data, "personal_data": "sealed"})
    sealed_email = "pii:v1:Y3VzLTE:AAAA"
    with pytest.raises(ValidationError, match="personal_data is plain but"):
        OrderPlaced.model_validate({**data, "customer_email": sealed_email})


async def test_tools_that_print_payloads_show_sealed_values_as_sealed():
    sealed = await seal_personal_data(sample_order_placed(), InMemoryKeyring())
    shown = conceal(sealed.model_dump(mode="json"))
    assert shown["customer_email"] == SHOWN
    assert shown["shipping_address"]["line1"] == SHOWN
    assert shown["shipping_address"]["city"] == sealed.shipping_address.city
    assert "pii:v1:" not in str(shown)


async def test_tools_show_a_forgotten_customers_sealed_values_as_erased():
    keyring = InMemoryKeyring()
    gone = await seal(keyring, "cus-gone", "customer_email", "ada@example.com")
    kept = await seal(keyring, "cus-kept", "customer_email", "bob@example.com")
    payloads = [{"customer_email": gone}, {"customer_email": kept, "city": "London"}]
    assert sealed_customers(payloads) == {"cus-gone", "cus-kept"}
    shown = conceal(payloads, frozenset({"cus-gone"}))
    assert shown == [{"customer_email": ERASED}, {"customer_email": SHOWN, "city": "London"}]


def test_a_damaged_sealed_value_names_no_customer_and_is_shown_sealed():
    damaged = "pii:v1:____:AAAA"  # the customer id is not UTF-8
    assert sealed_customers({"line1": damaged, "city": "London"}) == frozenset()
    assert not is_erased(damaged, frozenset({""}))
    assert conceal({"line1": damaged}, frozenset({"cus-1"})) == {"line1": SHOWN}

"""The order saga's paths on the secured Kafka: every process connects over TLS as its own
SCRAM user, whose ACLs allow only the topics it consumes and produces (and the CLI's client as
the administrator). The tests are those of :mod:`tests.e2e.test_order_paths`, collected again
here against this module's deployment: the forward path, approval (granted and rejected), each
compensation and a dead letter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from events.settings import Settings
from tests.e2e.conftest import Deployment, start_deployment
from tests.e2e.test_order_paths import (
    test_bounced_email_still_completes_and_is_dead_lettered,
    test_declined_payment_releases_stock,
    test_failed_shipment_refunds_then_releases,
    test_happy_path_completes,
    test_large_order_waits_for_approval_then_completes,
    test_out_of_stock_is_cancelled,
    test_rejected_approval_releases_stock,
)

pytestmark = pytest.mark.integration

__all__ = [
    "test_bounced_email_still_completes_and_is_dead_lettered",
    "test_declined_payment_releases_stock",
    "test_failed_shipment_refunds_then_releases",
    "test_happy_path_completes",
    "test_large_order_waits_for_approval_then_completes",
    "test_out_of_stock_is_cancelled",
    "test_rejected_approval_releases_stock",
]


@pytest.fixture(scope="module")
async def deployment(secure_kafka: Settings) -> AsyncIterator[Deployment]:
    async for d in start_deployment({}, "secure-paths", base=secure_kafka):
        yield d


def test_each_process_runs_as_its_own_user_over_tls(deployment: Deployment):
    """What each running process was given: its own user, TLS, and not the key."""
    for label, proc in deployment.platform.procs.items():
        raw = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
        env = dict(item.decode().partition("=")[::2] for item in raw if item)
        assert env["KAFKA_SASL_USERNAME"] == f"{deployment.settings.topic_prefix}{label}"
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert "CHOREO_KAFKA_USER_SECRET" not in env

"""Which of the broker's consumer groups belong to a deployment."""

from __future__ import annotations

from events.settings import Settings
from projections.lag import ConsumerLag


def test_a_deployments_groups_are_its_prefix_and_a_process_name():
    lag = ConsumerLag(Settings(topic_prefix="shop."))
    assert lag.owns("shop.projector")
    assert lag.owns("shop.saga-coordinator")
    assert not lag.owns("shop.eu.projector")  # another deployment's prefix, longer
    assert not lag.owns("shopping.projector")
    assert not lag.owns("bench1.projector")

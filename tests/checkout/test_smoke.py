from __future__ import annotations

import uuid

from checkout_cluster import Cluster, course_request


async def test_course_default_order_is_approved(cluster: Cluster) -> None:
    outcome = await cluster.pipeline.run(str(uuid.uuid4()), course_request())
    print(outcome)
    assert outcome.approved

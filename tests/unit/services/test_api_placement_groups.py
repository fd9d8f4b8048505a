"""``api.*_placement_group`` and ``create_instance``'s ``placement_group`` with a session
alone: bad input is a typed error that writes nothing; delete is refused while members live."""

from __future__ import annotations

import pytest

from collector import errors
from collector.models import Instance
from collector.services.api import instances as api
from collector.services.api import placement_groups as groups
from tests.unit.services.test_api_requests import refused, request, s, w  # noqa: F401


@pytest.mark.parametrize("params", [
    {"name": "web"},
    {"name": "web", "policy": "spread"},
    {"name": "", "policy": "affinity"},
    {"name": "web", "policy": "affinity", "max_per_host": 2},
    {"name": "web", "policy": "anti-affinity", "max_per_host": 0},
    {"name": "web", "policy": "anti-affinity", "max_per_host": "2"},
    {"name": "web", "policy": "anti-affinity", "colour": "blue"},
    "web",
], ids=["no-policy", "unknown-policy", "blank-name", "max-with-affinity", "max-zero",
        "max-not-int", "unknown-key", "not-a-map"])
def test_bad_group_requests_are_refused_and_write_nothing(s, w, params):  # noqa: F811
    refused(s, errors.InvalidParameter, groups.create_placement_group, params)


def test_create_list_show_and_delete(s, w):  # noqa: F811
    doc = groups.create_placement_group(s, {"name": "web", "policy": "anti-affinity",
                                            "max_per_host": 2})
    assert doc["policy"] == "anti-affinity" and doc["max_per_host"] == 2
    assert doc["id"] in [g["id"] for g in groups.list_placement_groups(s)]
    member = api.create_instance(s, request(w, placement_group=doc["id"]))
    shown = groups.show_placement_group(s, doc["id"])
    assert [m["id"] for m in shown["members"]] == [member["id"]]
    refused(s, errors.DestroyRefused, groups.delete_placement_group, doc["id"])
    api.terminate_instance(s, member["id"])
    assert groups.delete_placement_group(s, doc["id"])["deleted_at"] is not None
    assert doc["id"] not in [g["id"] for g in groups.list_placement_groups(s)]
    with pytest.raises(errors.UnknownPlacementGroupID):
        api.create_instance(s, request(w, placement_group=doc["id"]))


def test_create_instance_with_a_bad_group_writes_nothing(s, w):  # noqa: F811
    refused(s, errors.UnknownPlacementGroupID, api.create_instance,
            request(w, placement_group="pg-nothere0"))
    refused(s, errors.InvalidParameter, api.create_instance,
            request(w, placement_group="hn-nothere0"))
    other = groups.create_placement_group(s, {"name": "x", "policy": "affinity",
                                              "account_id": "a-other000"})
    refused(s, errors.InvalidParameter, api.create_instance,
            request(w, placement_group=other["id"]))
    assert s.query(Instance).filter(Instance.placement_group_id.is_not(None)).count() == 0

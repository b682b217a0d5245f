"""The server's pure parts: selectors, patch formats, CRD schema handling, the store's history."""

from __future__ import annotations

from typing import Any

import pytest

from hybrid_gateway_testkit.apiserver.errors import ApiError
from hybrid_gateway_testkit.apiserver.objects import (
    json_patch,
    merge_patch,
    parse_field_selector,
    parse_label_selector,
)
from hybrid_gateway_testkit.apiserver.resources import all_types
from hybrid_gateway_testkit.apiserver.store import ExpiredError, Store


def labelled(**labels: str) -> dict[str, Any]:
    return {"metadata": {"name": "n", "labels": labels}}


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("a=1", {"a": "1"}, True),
        ("a==1", {"a": "2"}, False),
        ("a!=1", {}, True),
        ("a", {"a": ""}, True),
        ("!a", {"a": "x"}, False),
        ("a in (1, 2),b notin (3)", {"a": "2", "b": "4"}, True),
        ("a in (1,2),b notin (3)", {"a": "2", "b": "3"}, False),
        ("a=1,b", {"a": "1"}, False),
    ],
)
def test_label_selectors(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector(selector)(labelled(**labels)) is expected


def test_selector_errors_are_400() -> None:
    with pytest.raises(ApiError) as err:
        parse_field_selector("spec.nodeName=x")
    assert err.value.code == 400 and "spec.nodeName" in err.value.message
    with pytest.raises(ApiError):
        parse_label_selector("!a in (1)")


def test_merge_patch_follows_rfc_7386() -> None:
    target = {"a": {"b": 1, "c": 2}, "l": [1, 2], "k": "v"}
    assert merge_patch(target, {"a": {"b": None, "d": 3}, "l": [3], "k": None}) == {
        "a": {"c": 2, "d": 3},
        "l": [3],
    }
    assert target == {"a": {"b": 1, "c": 2}, "l": [1, 2], "k": "v"}  # input untouched


def test_json_patch_operations() -> None:
    doc = {"spec": {"list": [1, 2, 3], "x": 1}}
    result = json_patch(
        doc,
        [
            {"op": "replace", "path": "/spec/list/1", "value": 9},
            {"op": "add", "path": "/spec/list/-", "value": 4},
            {"op": "remove", "path": "/spec/x"},
            {"op": "copy", "from": "/spec/list", "path": "/spec/copy"},
            {"op": "move", "from": "/spec/copy", "path": "/spec/moved"},
            {"op": "test", "path": "/spec/list/0", "value": 1},
            {"op": "add", "path": "/spec/a~1b", "value": True},
        ],
    )
    assert result == {"spec": {"list": [1, 9, 3, 4], "moved": [1, 9, 3, 4], "a/b": True}}
    with pytest.raises(ApiError) as err:
        json_patch(doc, [{"op": "remove", "path": "/spec/missing"}])
    assert err.value.code == 422


def vtep_type() -> Any:
    return next(rt for rt in all_types() if rt.plural == "ciliumvtepconfigs")


def test_crd_schema_names_every_bad_field() -> None:
    obj = {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumVTEPConfig",
        "metadata": {"name": "Bad_Name"},
        "spec": {
            "cidrMask": "255.255.0",
            "endpoints": [
                {"name": "e", "tunnelEndpoint": "1.2.3.4", "cidr": "10.0.0.0/8", "mac": 5}
            ],
        },
    }
    with pytest.raises(ApiError) as err:
        vtep_type().validate(obj)
    fields = [c["field"] for c in err.value.details["causes"]]  # type: ignore[index]
    assert fields == ["metadata.name", "spec.cidrMask", "spec.endpoints[0].mac"]
    assert err.value.message.startswith('CiliumVTEPConfig.cilium.io "Bad_Name" is invalid: [')
    assert "must be of type string" in err.value.message


def test_crd_defaults_are_applied_before_validation() -> None:
    obj = {
        "metadata": {"name": "x"},
        "spec": {
            "endpoints": [
                {
                    "name": "e",
                    "tunnelEndpoint": "1.2.3.4",
                    "cidr": "10.0.0.0/8",
                    "mac": "02:00:00:00:00:01",
                }
            ]
        },
    }
    assert vtep_type().validate(obj)["spec"]["cidrMask"] == "255.255.255.0"


def test_history_is_bounded_and_expires_old_positions() -> None:
    store = Store(all_types(), history_size=3)
    ns_type = store.namespace_type
    for i in range(5):
        store.create(ns_type, None, {"metadata": {"name": f"ns{i}"}})
    events, position = store.events_after(2, timeout=0)
    assert [e.rv for e in events] == [3, 4, 5] and position == 5
    with pytest.raises(ExpiredError):
        store.events_after(1, timeout=0)
    floor = store.compact()
    assert floor == 5
    with pytest.raises(ExpiredError):
        store.events_after(4, timeout=0)
    assert store.events_after(5, timeout=0) == ([], 5)


def test_only_a_compaction_expires_a_continued_list_not_the_bounded_history() -> None:
    """The history bound stands for the watch cache, which a continued list does not read."""
    store = Store(all_types(), history_size=2)
    ns_type = store.namespace_type
    for i in range(4):
        store.create(ns_type, None, {"metadata": {"name": f"ns{i}"}})
    items, rv = store.list_objects(ns_type, None, read_at=1)
    assert len(items) == 4 and rv == 4
    store.compact()
    with pytest.raises(ExpiredError):
        store.list_objects(ns_type, None, read_at=3)
    assert len(store.list_objects(ns_type, None, read_at=4)[0]) == 4

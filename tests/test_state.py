"""NodeTable rules that no protocol exposes directly."""

from heckle_appliance.core.identity import NodeName
from heckle_appliance.core.state import NodeTable


def test_reallocation_keeps_what_was_learnt_of_the_machine():
    table = NodeTable(clock=lambda: 100.0)
    table.allocate([NodeName("ip", "10.0.0.5", hostname="n05")], "a")
    node = table.find(ip="10.0.0.5", mac="52:54:00:00:00:05")
    node.arch = 7
    table.add_message(node, "Error", "boom")
    again, = table.allocate([NodeName("ip", "10.0.0.5")], "b")
    assert (again.image, again.errors, again.info) == ("b", 0, [])
    assert (again.mac, again.hostname, again.arch) == ("52:54:00:00:00:05", "n05", 7)


def test_mac_allocated_node_is_not_claimed_by_another_mac_at_its_address():
    table = NodeTable()
    table.allocate([NodeName("mac", "52:54:00:00:00:01")], "a")
    assert table.find(ip="10.0.0.9", mac="52:54:00:00:00:01") is not None
    assert table.find(ip="10.0.0.9") is not None  # learnt address, no MAC given
    assert table.find(ip="10.0.0.9", mac="52:54:00:00:00:02") is None


def test_message_times_strictly_increase_even_with_a_stuck_clock():
    table = NodeTable(clock=lambda: 5.0)
    node, = table.allocate([NodeName("ip", "10.0.0.1")], "a")
    times = [table.add_message(node, "Info", str(n))["Time"] for n in range(1000)]
    assert all(a < b for a, b in zip(times, times[1:]))


def test_round_trip_through_json():
    table = NodeTable(clock=lambda: 1.5)
    table.allocate([NodeName("mac", "52:54:00:00:00:01")], "a", {"k": 1})
    copy = NodeTable().load_json(table.to_json())
    assert copy.to_json() == table.to_json()

"""Pure parts of the eni-check-on and control-plane-upgrade drills: the VPC side's model of a
source/destination check, and the per-identity request rates read from the API audit."""

from __future__ import annotations

from hybrid_gateway_testkit.lab.runner import request_rates
from hybrid_gateway_testkit.lab.vpc_router import SdcGuard, sdc_ruleset


def test_a_checked_eni_drops_what_is_neither_from_nor_to_itself() -> None:
    guard = SdcGuard.parse("gw-a=i-1,10.0.0.11,02:AA:bb:cc:dd:ee")
    assert guard == SdcGuard("gw-a", "i-1", "10.0.0.11", "02:aa:bb:cc:dd:ee")
    script = sdc_ruleset([guard])
    assert "table bridge hgw_lab_sdc" in script
    # sent by the ENI with another source (forwarded from the tunnel): dropped
    assert "ether saddr 02:aa:bb:cc:dd:ee ether type ip ip saddr != 10.0.0.11" in script
    # delivered to the ENI for another destination (to be forwarded): dropped
    assert "ether daddr 02:aa:bb:cc:dd:ee ether type ip ip daddr != 10.0.0.11" in script
    assert script.count("drop") == 2
    assert "drop" not in sdc_ruleset([])  # check off everywhere: nothing dropped


def test_request_rates_per_identity_in_the_window() -> None:
    audit = [
        {"identity": "gw-b", "mono": 100.1},
        {"identity": "gw-b", "mono": 100.2},
        {"identity": "gw-b", "mono": 100.3},
        {"identity": "gw-b", "mono": 101.5},
        {"identity": "gw-a", "mono": 101.0},
        {"identity": "gw-b", "mono": 99.9},  # before the outage
        {"identity": "gw-b", "mono": 102.0},  # after it
    ]
    rates = request_rates(audit, 100.0, 102.0, ["gw-a", "gw-b"])
    assert rates["gw-b"] == {"requests": 4, "mean_per_s": 2.0, "peak_per_s": 3}
    assert rates["gw-a"] == {"requests": 1, "mean_per_s": 0.5, "peak_per_s": 1}

"""Configuration: every bad value is one clear error naming the variable and the value."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys

import pytest

from hybrid_gateway.cli import main
from hybrid_gateway.config import Config, ConfigError, load_config

GOOD = {
    "NODE_IP": "10.0.1.10",
    "VPC_CIDR": "10.0.0.0/16",
    "POD_CIDRS": "10.80.0.0/16,10.81.0.0/16",
    "ROUTE_TABLE_IDS": "rtb-0123456789abcdef0, rtb-01234567",
    "POD_NAME": "gw-0",
}


def load(**overrides: str) -> Config:
    env = {**GOOD, **overrides}
    return load_config({k: v for k, v in env.items() if v != "<unset>"}, [])


def test_defaults_follow_the_reference() -> None:
    cfg = load()
    assert cfg.node_ip == "10.0.1.10"
    assert cfg.pod_cidrs == (
        ipaddress.IPv4Network("10.80.0.0/16"),
        ipaddress.IPv4Network("10.81.0.0/16"),
    )
    assert cfg.route_table_ids == ("rtb-0123456789abcdef0", "rtb-01234567")
    assert (cfg.lease_duration_s, cfg.renew_deadline_s, cfg.retry_period_s) == (3.0, 2.0, 1.0)
    assert cfg.lease_name == "hybrid-gateway-leader"
    assert cfg.identity == "gw-0" and cfg.namespace == "eks-hybrid-nodes-gateway"
    assert cfg.vxlan_mtu == 1450 and cfg.log_format == "text"
    assert (cfg.health_addr.port, cfg.metrics_addr.port) == (8088, 10080)
    assert cfg.dataplane and not cfg.allow_route_takeover and not cfg.debug
    assert cfg.aws_region is None and cfg.aws_instance_id is None


def test_flags_override_the_environment() -> None:
    cfg = load_config(
        GOOD,
        [
            "--node-ip",
            "10.0.2.20",
            "--lease-duration",
            "1500ms",
            "--renew-deadline",
            "1s",
            "--retry-period",
            "0.2",
            "--health-addr",
            "127.0.0.1:18088",
            "--no-dataplane",
            "--allow-route-takeover",
            "true",
            "--log-format",
            "JSON",
        ],
    )
    assert cfg.node_ip == "10.0.2.20"
    assert (cfg.lease_duration_s, cfg.renew_deadline_s, cfg.retry_period_s) == (1.5, 1.0, 0.2)
    assert str(cfg.health_addr) == "127.0.0.1:18088"
    assert not cfg.dataplane and cfg.allow_route_takeover and cfg.log_format == "json"


def test_identity_falls_back_to_the_hostname() -> None:
    assert load(POD_NAME="<unset>").identity


BAD = [
    ("NODE_IP", "<unset>", "is required"),
    ("NODE_IP", "10.0.1.300", "not an IPv4 address"),
    ("NODE_IP", "0.0.0.0", "not a unicast"),
    ("VPC_CIDR", "<unset>", "is required"),
    ("VPC_CIDR", "10.0.0.1/16", "not an IPv4 CIDR"),
    ("VPC_CIDR", ",".join(f"10.{i}.0.0/16" for i in range(9)), "at most 8"),
    ("VPC_CIDR", "10.0.0.0/16,10.0.0.0/16", "listed twice"),
    ("POD_CIDRS", "<unset>", "is required"),
    ("POD_CIDRS", "banana", "not an IPv4 CIDR"),
    ("POD_CIDRS", "10.0.128.0/20", "overlaps VPC CIDR"),
    ("ROUTE_TABLE_IDS", "rtb-xyz", "not a route table id"),
    ("LEADER_ELECTION_ID", "Not_A_Name", "not a valid Kubernetes object name"),
    ("AWS_REGION", "us-east-1a", "not an AWS region"),
    ("AWS_INSTANCE_ID", "instance-1", "not an instance id"),
    ("POD_NAMESPACE", "Kube_System", "not a valid namespace"),
    ("DEBUG", "maybe", "not a boolean"),
    ("LEASE_DURATION", "3 seconds", "not a duration"),
    ("LEASE_DURATION", "0", "must be positive"),
    ("RENEW_DEADLINE", "3", "shorter than the lease duration"),
    ("RETRY_PERIOD", "2s", "shorter than the renew deadline"),
    ("VXLAN_MTU", "9000", "integer 576-8951"),
    ("VXLAN_MTU", "abc", "integer 576-8951"),
    ("RESYNC_PERIOD", "-5", "not a duration"),
    ("ALLOW_ROUTE_TAKEOVER", "sure", "not a boolean"),
    ("LOG_FORMAT", "xml", "text or json"),
    ("HEALTH_ADDR", "8088", "expected [host]:port"),
    ("HEALTH_ADDR", ":70000", "port must be 1-65535"),
    ("METRICS_ADDR", "localhost:10080", "host must be an IP address"),
    ("METRICS_ADDR", ":8088", "same address as HEALTH_ADDR"),
]


@pytest.mark.parametrize(
    ("variable", "value", "reason"), BAD, ids=[f"{v}={x[:20]}" for v, x, _ in BAD]
)
def test_bad_value_names_variable_and_value(variable: str, value: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(**{variable: value})
    message = str(info.value)
    assert "\n" not in message
    assert variable in message and reason in message
    if value != "<unset>":
        assert value in message
    assert info.value.variable == variable


def test_unknown_flag_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--bogus"):
        load_config(GOOD, ["--bogus", "1"])


def test_cli_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in GOOD.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("VXLAN_MTU", "99999")
    assert main(["run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "hybrid-gateway: invalid VXLAN_MTU (--vxlan-mtu) '99999': must be an integer 576-8951"
    ]
    assert main(["frobnicate"]) == 2


def test_python_dash_m_entry_point_reports_bad_value_with_exit_2() -> None:
    env = {k: v for k, v in os.environ.items() if k not in GOOD}
    env.update(GOOD, NODE_IP="not-an-ip")
    proc = subprocess.run(
        [sys.executable, "-m", "hybrid_gateway", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == "hybrid-gateway: invalid NODE_IP (--node-ip) 'not-an-ip': not an IPv4 address"
    )


def test_console_script_is_installed() -> None:
    script = os.path.join(os.path.dirname(sys.executable), "hybrid-gateway")
    proc = subprocess.run(
        [script, "run", "--vpc-cidr", "x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": os.environ.get("PATH", "")},
    )
    assert proc.returncode == 2 and "NODE_IP" in proc.stderr

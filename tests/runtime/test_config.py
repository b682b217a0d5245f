"""Configuration: every bad value is one clear error naming the variable and the value."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

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
    ("VPC_CIDR", "10.0.0.1/16", "has host bits set; did you mean '10.0.0.0/16'?"),
    ("VPC_CIDR", "10.0.0.0", "missing /prefix length"),
    ("VPC_CIDR", ",".join(f"10.{i}.0.0/16" for i in range(9)), "at most 8"),
    ("VPC_CIDR", "10.0.0.0/16,10.0.0.0/16", "listed twice"),
    ("POD_CIDRS", "<unset>", "is required"),
    ("POD_CIDRS", "banana", "'banana' is not a valid IPv4 CIDR"),
    ("POD_CIDRS", "10.0.128.0/20", "POD_CIDRS[0]: '10.0.128.0/20' overlaps VPC_CIDR[0]"),
    ("ROUTE_TABLE_IDS", "rtb-xyz", "'rtb-xyz' is not a route table ID"),
    ("ROUTE_TABLE_IDS", " , ,", "set but holds no route table ID"),
    ("LEADER_ELECTION_ID", "Not_A_Name", "not a valid Kubernetes name"),
    ("LEADER_ELECTION_ID", "a..b", "not a valid Kubernetes name"),
    ("AWS_REGION", "us-east-1a", "not an AWS region"),
    ("AWS_INSTANCE_ID", "instance-1", "not an instance id"),
    ("POD_NAMESPACE", "Kube_System", "not a valid Kubernetes name"),
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


# --- Drop-in for the reference gateway (aws/eks-hybrid-nodes-gateway cmd/gateway/main.go) ------


def test_pod_namespace_falls_back_to_the_service_account_file(tmp_path: Path) -> None:
    """The reference's chart sets no POD_NAMESPACE: controller-runtime finds the Lease namespace
    in the service account's namespace file, so a drop-in must read it too."""
    namespace_file = tmp_path / "namespace"
    namespace_file.write_text("gateway-system")  # the kubelet writes it without a newline
    env = {**GOOD}
    assert load_config(env, [], namespace_file=namespace_file).namespace == "gateway-system"
    # POD_NAMESPACE still wins over the file.
    env["POD_NAMESPACE"] = "from-env"
    assert load_config(env, [], namespace_file=namespace_file).namespace == "from-env"
    # Not in a pod (no file): the default.
    missing = tmp_path / "absent"
    assert load_config(GOOD, [], namespace_file=missing).namespace == "eks-hybrid-nodes-gateway"


def test_an_unreadable_or_invalid_namespace_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "namespace"
    bad.write_text("Not_A_Namespace\n")
    with pytest.raises(ConfigError) as info:
        load_config(GOOD, [], namespace_file=bad)
    assert info.value.variable == "POD_NAMESPACE"
    assert f"'Not_A_Namespace (from {bad})'" in str(info.value)
    unreadable = tmp_path / "a-directory"
    unreadable.mkdir()
    with pytest.raises(ConfigError, match=r"POD_NAMESPACE \(--pod-namespace\) is required: not"):
        load_config(GOOD, [], namespace_file=unreadable)


def test_the_reference_flags_are_accepted() -> None:
    """Every flag of the reference's main.go, in Go's `--x v`, `--x=v` and `-x=v` spellings."""
    cfg = load_config(
        {"POD_NAME": "gw-0"},
        [
            "--metrics-bind-address=127.0.0.1:18080",
            "-health-probe-bind-address",
            ":18088",
            "--node-ip",
            "10.0.1.10",
            "-vpc-cidr=10.0.0.0/16",
            "--pod-cidrs",
            "10.80.0.0/16",
            "--route-table-ids=rtb-01234567",
            "-leader-election-id=my-lease",
            "--aws-region",
            "us-gov-west-1",
            "--aws-instance-id=i-0123456789abcdef0",
            "--leader-election-lease-duration=15s",
            "--leader-election-renew-deadline",
            "10s",
            "-leader-election-retry-period=2s",
            "--debug",
            "--kubeconfig=/etc/gateway/kubeconfig",
        ],
    )
    assert str(cfg.metrics_addr) == "127.0.0.1:18080" and str(cfg.health_addr) == ":18088"
    assert cfg.node_ip == "10.0.1.10" and cfg.lease_name == "my-lease"
    assert cfg.route_table_ids == ("rtb-01234567",) and cfg.aws_region == "us-gov-west-1"
    assert (cfg.lease_duration_s, cfg.renew_deadline_s, cfg.retry_period_s) == (15.0, 10.0, 2.0)
    assert cfg.debug and cfg.kubeconfig == "/etc/gateway/kubeconfig"


@pytest.mark.parametrize(
    ("argv", "environ_debug", "expected"),
    [
        (["--debug"], None, True),
        (["-debug"], None, True),
        (["--debug=true"], None, True),
        (["--debug=false"], "true", False),  # the flag overrides DEBUG, as in the reference
        (["--debug", "--node-ip", "10.0.1.10"], None, True),  # a bare --debug before a flag
        ([], "true", True),
        ([], None, False),
    ],
)
def test_debug_is_a_go_style_boolean_flag(
    argv: list[str], environ_debug: str | None, expected: bool
) -> None:
    env = {**GOOD, **({"DEBUG": environ_debug} if environ_debug is not None else {})}
    assert load_config(env, argv).debug is expected


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3s", 3.0),
        ("1500ms", 1.5),
        ("1m30s", 90.0),
        ("0.5s", 0.5),
        ("2", 2.0),  # ours: a bare number is seconds
        ("1h", 3600.0),
        ("250000us", 0.25),
    ],
)
def test_durations_take_go_syntax(text: str, seconds: float) -> None:
    """time.ParseDuration is what the reference's --leader-election-* flags parse with."""
    cfg = load(LEASE_DURATION=text, RENEW_DEADLINE="0.2", RETRY_PERIOD="0.1")
    assert cfg.lease_duration_s == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["3 s", "s", "3x", "1m30", "-2s", "3s5"])
def test_malformed_durations_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="not a duration"):
        load(LEASE_DURATION=text)


def test_metrics_off_0_is_refused_by_name() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(GOOD, ["--metrics-bind-address=0"])
    assert "METRICS_ADDR (--metrics-addr or --metrics-bind-address) '0'" in str(info.value)


def test_abbreviated_flags_are_refused() -> None:
    """Go's flag package has no prefixes; neither do we (a prefix could change meaning)."""
    with pytest.raises(ConfigError, match="unrecognized arguments"):
        load_config(GOOD, ["--metrics-bind", ":18080"])


@pytest.mark.parametrize(
    "region",
    [
        "us-east-1",
        "us-gov-west-1",
        "cn-north-1",
        "cn-northwest-1",
        "eu-isoe-west-1",
        "us-isob-east-1",
        "us-isof-south-1",
        "ap-southeast-7",
        "mx-central-1",
        "il-central-1",
        "ca-west-1",
        "eusc-de-east-1",
    ],
)
def test_any_valid_region_name_is_accepted(region: str) -> None:
    assert load(AWS_REGION=region).aws_region == region


def test_comma_lists_skip_empty_items_like_the_reference() -> None:
    """The reference's chart passes the user's raw string; its parsers skip empty items."""
    cfg = load(
        VPC_CIDR="10.0.0.0/16,",
        POD_CIDRS=" 10.80.0.0/16,,10.81.0.0/16 , ",
        ROUTE_TABLE_IDS=",rtb-01234567,,",
    )
    assert [str(c) for c in cfg.vpc_cidrs] == ["10.0.0.0/16"]
    assert [str(c) for c in cfg.pod_cidrs] == ["10.80.0.0/16", "10.81.0.0/16"]
    assert cfg.route_table_ids == ("rtb-01234567",)


def test_route_table_ids_unset_or_empty_means_no_vpc_routes() -> None:
    """main.go: `if routeTableIDs != ""` guards the route table manager."""
    assert load(ROUTE_TABLE_IDS="<unset>").route_table_ids == ()
    assert load(ROUTE_TABLE_IDS="").route_table_ids == ()


@pytest.mark.parametrize("raw", [",", " ", " , ,"])
def test_route_table_ids_set_without_an_id_stops_the_daemon(raw: str) -> None:
    """main.go exits with "No valid route table IDs provided"; so do we, naming the value."""
    with pytest.raises(ConfigError) as info:
        load(ROUTE_TABLE_IDS=raw)
    assert str(info.value) == (
        f"invalid ROUTE_TABLE_IDS (--route-table-ids) {raw!r}: set but holds no route table ID; "
        "list at least one, or unset it to run without VPC routes"
    )


def test_the_reference_charts_environment_is_enough(tmp_path: Path) -> None:
    """charts/eks-hybrid-nodes-gateway/templates/deployment.yaml sets only these four variables
    (the user's raw strings, trailing commas included) and no POD_NAME or POD_NAMESPACE."""
    namespace_file = tmp_path / "namespace"
    namespace_file.write_text("eks-hybrid-nodes-gateway-system")
    environ = {
        "NODE_IP": "10.0.1.10",
        "VPC_CIDR": "10.0.0.0/16",
        "POD_CIDRS": "10.80.0.0/16,10.81.0.0/16,",
        "ROUTE_TABLE_IDS": "rtb-0123456789abcdef0,rtb-01234567,",
    }
    cfg = load_config(environ, [], namespace_file=namespace_file)
    assert cfg.namespace == "eks-hybrid-nodes-gateway-system"
    assert cfg.identity  # the hostname
    assert cfg.route_table_ids == ("rtb-0123456789abcdef0", "rtb-01234567")
    assert [str(c) for c in cfg.pod_cidrs] == ["10.80.0.0/16", "10.81.0.0/16"]
    assert (str(cfg.health_addr), str(cfg.metrics_addr)) == (":8088", ":10080")


ONCE = [
    ({"RENEW_DEADLINE": "5"}, "RENEW_DEADLINE", "5"),
    ({"RETRY_PERIOD": "2.5"}, "RETRY_PERIOD", "2.5"),
    ({"MODE": "active-active", "SHARDS": "3"}, "SHARDS", "3"),
    ({"MODE": "active-active", "SHARDS": "16", "POD_CIDRS": "10.90.0.0/29"}, "SHARDS", "16"),
    (
        {"MODE": "active-active", "SHARDS": "64", "MAX_ROUTES_PER_TABLE": "70"},
        "MAX_ROUTES_PER_TABLE",
        "70",
    ),
]


@pytest.mark.parametrize(("overrides", "variable", "value"), ONCE, ids=[v for _, v, _ in ONCE])
def test_an_error_states_the_value_once(
    overrides: dict[str, str], variable: str, value: str
) -> None:
    """The line names the variable and its value; the reason after them says what is wrong
    without restating the value (the rules across settings name only the OTHER values)."""
    with pytest.raises(ConfigError) as info:
        load(**overrides)
    assert info.value.variable == variable
    named, _, reason = str(info.value).partition(f"{value!r}: ")
    assert named.startswith(f"invalid {variable} (") and reason
    assert value.rstrip("s") not in reason, reason


def test_config_holds_every_value_the_daemon_reads_from_its_environment(tmp_path: Path) -> None:
    """After start-up nothing reads the environment: the membership Lease's owner, the
    kubeconfig and the IMDS settings are in the Config (the flag wins over KUBECONFIG)."""
    environ = {
        **GOOD,
        "POD_UID": " 0d6c0a3e-7f0b-4a4c-9d8e-5f1b2c3d4e5f ",
        "KUBECONFIG": "/etc/env-kubeconfig",
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:1338/",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    cfg = load_config(environ, [])
    assert cfg.pod_uid == "0d6c0a3e-7f0b-4a4c-9d8e-5f1b2c3d4e5f"
    assert cfg.kubeconfig == "/etc/env-kubeconfig"
    assert (cfg.imds.endpoint, cfg.imds.disabled) == ("http://127.0.0.1:1338", True)
    flagged = load_config(environ, ["--kubeconfig", str(tmp_path / "k")])
    assert flagged.kubeconfig == str(tmp_path / "k")
    bare = load_config(GOOD, [])
    assert bare.pod_uid is None and bare.kubeconfig is None
    assert (bare.imds.endpoint, bare.imds.disabled) == ("http://169.254.169.254", False)

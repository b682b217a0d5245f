"""The construct library as a platform team uses it: built wheels installed in a fresh virtual
environment, and a CDK app that lives outside this repository.

The wheels are built from this checkout (`pip wheel --no-deps --no-build-isolation`, offline)
and installed with `--no-deps` into a new venv; a `.pth` file lends it this project's
site-packages for the third-party dependencies (aws-cdk-lib, cdk8s, boto3, ...). A `.pth` path
line does not run the editable-install `.pth` files of that directory, so the project's own
packages come from the installed wheels only, which the app checks.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PROJECTS = {
    "cdk-eks-hybrid-nodes-gateway": REPO,
    "eks-hybrid-gateway-contract": REPO / "contract",
    "eks-hybrid-gateway-runtime": REPO / "runtime",
}
#: Every distribution of this repository: the three above and the test tooling.
DISTRIBUTIONS = {
    **PROJECTS,
    "kube-test-apiserver": REPO / "apiserver",
    "eks-hybrid-gateway-testkit": REPO / "testkit",
}
#: Where the construct's wheel keeps the image's build context (see hatch_build.py).
CONTEXT_IN_WHEEL = "eks_hybrid_gateway/image_context/"
REGISTRY_IMAGE = "123456789012.dkr.ecr.us-west-2.amazonaws.com/eks-hybrid-nodes-gateway:0.1.0"

pytestmark = pytest.mark.slow

# A platform team's app: its own directory, nothing of this repository on sys.path.
APP = textwrap.dedent(
    f"""
    import json
    import sys

    import aws_cdk as cdk
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_eks_v2 as eks
    from aws_cdk.lambda_layer_kubectl_v35 import KubectlV35Layer

    import eks_hybrid_gateway
    import hybrid_gateway_contract
    from eks_hybrid_gateway import GatewayImage, HybridNodesGateway
    from eks_hybrid_gateway.image import default_build_context

    NETWORKS = dict(
        remote_node_networks=["192.168.100.0/24"], remote_pod_networks=["10.85.0.0/16"]
    )


    class ClusterStack(cdk.Stack):
        def __init__(self, scope, id, cidr, **kwargs):
            super().__init__(scope, id, **kwargs)
            self.vpc = ec2.Vpc(self, "Vpc", ip_addresses=ec2.IpAddresses.cidr(cidr), max_azs=2)
            self.cluster = eks.Cluster(
                self,
                "Cluster",
                version=eks.KubernetesVersion.V1_35,
                vpc=self.vpc,
                default_capacity_type=eks.DefaultCapacityType.NODEGROUP,
                default_capacity=0,
                kubectl_provider_options=eks.KubectlProviderOptions(
                    kubectl_layer=KubectlV35Layer(self, "Kubectl")
                ),
            )


    app = cdk.App(outdir=sys.argv[1])
    env = cdk.Environment(account="123456789012", region="us-west-2")
    # 1. The default image, built from the wheel's packaged context.
    standalone = ClusterStack(app, "Standalone", "10.0.0.0/16", env=env)
    HybridNodesGateway(
        standalone,
        "Gateway",
        cluster=standalone.cluster,
        vpc=standalone.vpc,
        remove_routes_on_delete=True,
        **NETWORKS,
    )
    # 2. A prebuilt image, 3. in another stack than its cluster.
    platform = ClusterStack(app, "Platform", "10.1.0.0/16", env=env)
    gateways = cdk.Stack(app, "PlatformGateway", env=env)
    HybridNodesGateway(
        gateways,
        "Gateway",
        cluster=platform.cluster,
        vpc=platform.vpc,
        image=GatewayImage.from_registry("{REGISTRY_IMAGE}"),
        **NETWORKS,
    )
    app.synth()
    print(json.dumps({{
        "construct": eks_hybrid_gateway.__file__,
        "contract": hybrid_gateway_contract.__file__,
        "context": str(default_build_context()),
    }}))
    """
)


def _run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-4000:]}{result.stderr[-8000:]}"
    return result


def _tracked_context_files() -> set[str]:
    """What `docker build` needs: the repository's files under contract/ and runtime/."""
    listed = _run("git", "ls-files", "contract", "runtime", cwd=REPO).stdout.split()
    return set(listed)


def _build_wheels(out: Path, *projects: Path) -> dict[str, Path]:
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--wheel-dir",
        out,
        *projects,
    )
    wheels = {path.name.split("-")[0].replace("_", "-"): path for path in out.glob("*.whl")}
    assert len(wheels) == len(projects), sorted(wheels)
    return wheels


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The three distributions' wheels, by distribution name."""
    return _build_wheels(tmp_path_factory.mktemp("wheels"), *PROJECTS.values())


@pytest.fixture(scope="module")
def fresh_python(tmp_path_factory: pytest.TempPathFactory, wheels: dict[str, Path]) -> Path:
    """A new venv with the three wheels installed; the rest comes from this project's venv."""
    venv = tmp_path_factory.mktemp("consumer-venv")
    _run(sys.executable, "-m", "venv", "--without-pip", "--clear", venv)
    python = venv / "bin" / "python"
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--quiet",
        "--no-deps",
        "--no-index",
        *wheels.values(),
    )
    purelib = Path(
        _run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").stdout.strip()
    )
    (purelib / "project-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


def _synth(python: Path, workdir: Path) -> tuple[Path, dict[str, str]]:
    """Run the platform team's app with `python` from `workdir`; (cloud assembly, app report)."""
    workdir.mkdir()
    (workdir / "app.py").write_text(APP)
    outdir = workdir / "cdk.out"
    # -I: no PYTHONPATH, no current directory on sys.path; only what the venv holds.
    result = _run(python, "-I", "app.py", outdir, cwd=workdir)
    report: dict[str, str] = json.loads(result.stdout.strip().splitlines()[-1])
    return outdir, report


def _docker_image(outdir: Path, stack: str) -> list[tuple[str, dict[str, Any]]]:
    assets = json.loads((outdir / f"{stack}.assets.json").read_text())
    return list(assets.get("dockerImages", {}).items())


def _files_under(directory: Path) -> set[str]:
    return {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def consumer_app(
    tmp_path_factory: pytest.TempPathFactory, fresh_python: Path
) -> tuple[Path, dict[str, str]]:
    return _synth(fresh_python, tmp_path_factory.mktemp("platform-team") / "app")


def test_the_app_runs_on_the_installed_wheels_only(
    consumer_app: tuple[Path, dict[str, str]], fresh_python: Path
) -> None:
    _, report = consumer_app
    venv = fresh_python.parent.parent
    for module in ("construct", "contract"):
        assert Path(report[module]).is_relative_to(venv), report
        assert not Path(report[module]).is_relative_to(REPO), report
    assert Path(report["context"]) == Path(report["construct"]).parent / "image_context"


def test_the_default_image_builds_from_the_packaged_context(
    consumer_app: tuple[Path, dict[str, str]],
) -> None:
    outdir, _ = consumer_app
    [(_, image)] = _docker_image(outdir, "Standalone")
    source = image["source"]
    assert source["dockerFile"] == "runtime/Dockerfile"
    assert source["platform"] == "linux/amd64"
    staged = outdir / source["directory"]
    # Exactly the repository's contract/ and runtime/ files (and the .dockerignore CDK always
    # stages): no caches, nothing else.
    assert _files_under(staged) == _tracked_context_files() | {".dockerignore"}
    dockerfile = staged / "runtime" / "Dockerfile"
    assert dockerfile.read_bytes() == (REPO / "runtime" / "Dockerfile").read_bytes()
    copied = [
        word
        for line in dockerfile.read_text().splitlines()
        if line.strip().upper().startswith("COPY") and "--from" not in line
        for word in line.split()[1:-1]
    ]
    assert copied
    for source_path in copied:
        assert (staged / source_path).exists(), source_path


def test_the_route_cleanup_handler_is_bundled_from_the_wheel(
    consumer_app: tuple[Path, dict[str, str]],
) -> None:
    outdir, _ = consumer_app
    assets = json.loads((outdir / "Standalone.assets.json").read_text())["files"]
    bundles = [
        outdir / entry["source"]["path"]
        for entry in assets.values()
        if (outdir / entry["source"]["path"] / "index.py").is_file()
    ]
    planner = Path("hybrid_gateway_contract") / "route_cleanup.py"
    handlers = [bundle for bundle in bundles if (bundle / planner).is_file()]
    assert len(handlers) == 1, bundles


def test_prebuilt_image_in_another_stack_than_its_cluster(
    consumer_app: tuple[Path, dict[str, str]],
) -> None:
    outdir, _ = consumer_app
    assert _docker_image(outdir, "PlatformGateway") == []
    gateway = (outdir / "PlatformGateway.template.json").read_text()
    cluster = (outdir / "Platform.template.json").read_text()
    assert REGISTRY_IMAGE in gateway
    assert "Fn::ImportValue" in gateway  # refers to the cluster's stack ...
    assert "Fn::ImportValue" not in cluster  # ... which never refers back


def test_the_image_asset_hash_is_the_same_installed_and_in_a_checkout(
    consumer_app: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    installed, _ = consumer_app
    checkout, report = _synth(Path(sys.executable), tmp_path / "checkout-app")
    assert Path(report["context"]) == REPO
    [(installed_hash, _)] = _docker_image(installed, "Standalone")
    [(checkout_hash, _)] = _docker_image(checkout, "Standalone")
    assert installed_hash == checkout_hash


def test_the_wheel_carries_exactly_the_build_context(wheels: dict[str, Path]) -> None:
    with zipfile.ZipFile(wheels["cdk-eks-hybrid-nodes-gateway"]) as wheel:
        names = wheel.namelist()
    packaged = {n.removeprefix(CONTEXT_IN_WHEEL) for n in names if n.startswith(CONTEXT_IN_WHEEL)}
    assert packaged == _tracked_context_files() | {".dockerignore"}
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert "eks_hybrid_gateway/scripts/disable-source-dest-check.sh" in names
    assert "eks_hybrid_gateway/route_cleanup_handler/index.py" in names


def test_the_context_leaves_out_caches_and_build_output(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO))
    try:
        from hatch_build import context_files
    finally:
        sys.path.remove(str(REPO))
    for name in (
        "runtime/Dockerfile",
        "runtime/hybrid_gateway/cli.py",
        "runtime/hybrid_gateway/__pycache__/cli.cpython-311.pyc",
        "runtime/eks_hybrid_gateway_runtime.egg-info/PKG-INFO",
        "runtime/build/lib/x.py",
        "contract/hybrid_gateway_contract/__init__.py",
        "contract/.mypy_cache/x.json",
        "contract/stray.pyc",
        "tests/test_x.py",
        ".dockerignore",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x\n")
    assert context_files(tmp_path) == [
        ".dockerignore",
        "contract/hybrid_gateway_contract/__init__.py",
        "runtime/Dockerfile",
        "runtime/hybrid_gateway/cli.py",
    ]
    (tmp_path / "runtime" / "Dockerfile").unlink()
    with pytest.raises(FileNotFoundError, match="runtime/Dockerfile"):
        context_files(tmp_path)


def test_sdists_build_and_give_the_same_wheels(tmp_path: Path, wheels: dict[str, Path]) -> None:
    """Each sdist builds; a wheel built from it holds the same files as one built from the tree."""
    sdists = tmp_path / "sdists"
    for project in PROJECTS.values():
        _run(
            sys.executable,
            "-c",
            f"import hatchling.build as b; b.build_sdist({str(sdists)!r})",
            cwd=project,
        )
    unpacked = tmp_path / "unpacked"
    projects = []
    for sdist in sorted(sdists.glob("*.tar.gz")):
        with tarfile.open(sdist) as archive:
            archive.extractall(unpacked, filter="data")
        projects.append(unpacked / sdist.name.removesuffix(".tar.gz"))
    assert len(projects) == 3, sorted(p.name for p in projects)
    from_sdists = _build_wheels(tmp_path / "wheels-from-sdists", *projects)
    for name, wheel in wheels.items():
        with zipfile.ZipFile(wheel) as a, zipfile.ZipFile(from_sdists[name]) as b:
            assert sorted(a.namelist()) == sorted(b.namelist()), name


def test_one_version_for_every_distribution(fresh_python: Path) -> None:
    metadata = {
        name: tomllib.loads((path / "pyproject.toml").read_text())["project"]
        for name, path in DISTRIBUTIONS.items()
    }
    versions = {project["version"] for project in metadata.values()}
    assert len(versions) == 1, versions
    [version] = versions
    for name, project in metadata.items():
        pins = [d for d in project["dependencies"] if d.startswith("eks-hybrid-gateway-contract")]
        if name in PROJECTS and name != "eks-hybrid-gateway-contract":
            assert pins == [f"eks-hybrid-gateway-contract=={version}"], (name, pins)
        extras = project.get("optional-dependencies", {}).values()
        requirements = [*project["dependencies"], *(r for extra in extras for r in extra)]
        ours = [r for r in requirements if re.split(r"[\[=<>!~; ]", r, maxsplit=1)[0] in metadata]
        assert all(r.split("==", 1)[1:] == [version] for r in ours), (name, ours)
    # The test API server is gateway-agnostic; the gateway's test tooling stands on it.
    assert [r for r in metadata["kube-test-apiserver"]["dependencies"] if "gateway" in r] == []
    assert (
        f"kube-test-apiserver=={version}" in metadata["eks-hybrid-gateway-testkit"]["dependencies"]
    )
    changelog = (REPO / "CHANGELOG.md").read_text()
    [first_release] = [line for line in changelog.splitlines() if line.startswith("## ")][:1]
    assert first_release.split()[1] == version
    installed = _run(
        fresh_python,
        "-c",
        "import json, importlib.metadata as m; "
        f"print(json.dumps({{d: m.version(d) for d in {sorted(PROJECTS)!r}}}))",
    ).stdout
    assert set(json.loads(installed).values()) == {version}


def test_the_runtime_wheel_installs_its_command(fresh_python: Path) -> None:
    command = fresh_python.parent / "hybrid-gateway"
    assert command.is_file()
    help_text = _run(command, "--help", cwd=Path(os.sep)).stdout
    assert "run" in help_text

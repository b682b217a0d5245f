"""Where the gateway image comes from: a registry URI, an ECR repository, or built at deploy."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aws_cdk as cdk
import constructs
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam

from eks_hybrid_gateway.nag import acknowledge
from eks_hybrid_gateway.validation import HybridGatewayConfigError, is_token


def _grant_pull(repository: ecr.IRepository, node_role: iam.IRole) -> None:
    repository.grant_pull(node_role)
    acknowledge(
        node_role,
        "IAM5[Resource::*]",
        "ecr:GetAuthorizationToken, part of an ECR pull grant, supports no resource-level "
        "permissions; the pull actions themselves are scoped to the image's repository",
    )


#: Dockerfile of the runtime, relative to the build context (the repository root).
RUNTIME_DOCKERFILE = "runtime/Dockerfile"

#: Only what the Dockerfile copies goes into the build context (and into the asset hash).
ASSET_EXCLUDES = (
    "*",
    "!contract",
    "!runtime",
    "**/__pycache__",
    "**/*.pyc",
    "**/*.egg-info",
    "**/.mypy_cache",
    "**/.ruff_cache",
    "**/.pytest_cache",
)


#: The build context an installed wheel carries as package data (see hatch_build.py): the
#: runtime and contract sources and the Dockerfile, laid out like the repository root.
PACKAGED_CONTEXT = "image_context"


def default_build_context() -> Path:
    """Where `GatewayImage.from_asset()` builds from by default.

    An installed wheel: its packaged context. A source checkout (editable install, no packaged
    context): the repository root, constructs/eks_hybrid_gateway/../.. . Both hold the same
    files after `ASSET_EXCLUDES`, so the image asset has the same hash either way.
    """
    package = Path(__file__).resolve().parent
    packaged = package / PACKAGED_CONTEXT
    if (packaged / RUNTIME_DOCKERFILE).is_file():
        return packaged
    return package.parents[1]


@dataclass(frozen=True)
class BoundImage:
    """The result of binding an image: the URI pods pull."""

    image_uri: str


class GatewayImage(abc.ABC):
    """The gateway container image."""

    @staticmethod
    def from_registry(image_uri: str) -> GatewayImage:
        """A prebuilt image, e.g. `123456789012.dkr.ecr.us-west-2.amazonaws.com/gateway:1.0`."""
        return _RegistryImage(image_uri)

    @staticmethod
    def from_ecr_repository(repository: ecr.IRepository, tag: str = "latest") -> GatewayImage:
        """An image in an ECR repository; the node role is granted pull on that repository."""
        return _EcrImage(repository, tag)

    @staticmethod
    def from_asset(
        directory: str | Path | None = None,
        *,
        file: str = RUNTIME_DOCKERFILE,
        build_args: Mapping[str, str] | None = None,
    ) -> GatewayImage:
        """Built from `runtime/Dockerfile` by `cdk deploy` (needs Docker where you deploy).

        `directory` is the build context: by default the one the installed wheel carries
        (`eks_hybrid_gateway/image_context`), or the repository root in a source checkout.
        """
        return _AssetImage(Path(directory) if directory else None, file, dict(build_args or {}))

    def validate(self) -> None:  # noqa: B027 - optional hook, most images have nothing to check
        """Raise `HybridGatewayConfigError` early if the image cannot be produced."""

    @abc.abstractmethod
    def bind(
        self,
        scope: constructs.Construct,
        *,
        node_role: iam.IRole,
        architecture: ec2.InstanceArchitecture,
    ) -> BoundImage:
        """Create whatever the image needs in `scope` and let `node_role` pull it."""


class _RegistryImage(GatewayImage):
    def __init__(self, image_uri: str) -> None:
        if not is_token(image_uri) and (not image_uri or " " in image_uri):
            raise HybridGatewayConfigError(f"image: {image_uri!r} is not an image reference")
        self._uri = image_uri

    def bind(
        self,
        scope: constructs.Construct,
        *,
        node_role: iam.IRole,
        architecture: ec2.InstanceArchitecture,
    ) -> BoundImage:
        return BoundImage(self._uri)


class _EcrImage(GatewayImage):
    def __init__(self, repository: ecr.IRepository, tag: str) -> None:
        self._repository = repository
        self._tag = tag

    def bind(
        self,
        scope: constructs.Construct,
        *,
        node_role: iam.IRole,
        architecture: ec2.InstanceArchitecture,
    ) -> BoundImage:
        _grant_pull(self._repository, node_role)
        return BoundImage(self._repository.repository_uri_for_tag(self._tag))


class _AssetImage(GatewayImage):
    def __init__(self, directory: Path | None, file: str, build_args: dict[str, str]) -> None:
        self._directory = directory
        self._file = file
        self._build_args = build_args

    def validate(self) -> None:
        dockerfile = (self._directory or default_build_context()) / self._file
        if not dockerfile.is_file():
            raise HybridGatewayConfigError(
                f"image: GatewayImage.from_asset() needs the Dockerfile {str(dockerfile)!r}, which "
                "does not exist; pass directory= (the build context holding runtime/Dockerfile), "
                "install the library from its wheel (which carries that context) or use "
                "GatewayImage.from_registry(uri)"
            )

    def bind(
        self,
        scope: constructs.Construct,
        *,
        node_role: iam.IRole,
        architecture: ec2.InstanceArchitecture,
    ) -> BoundImage:
        self.validate()
        directory = self._directory or default_build_context()
        platform = (
            ecr_assets.Platform.LINUX_ARM64
            if architecture == ec2.InstanceArchitecture.ARM_64
            else ecr_assets.Platform.LINUX_AMD64
        )
        asset = ecr_assets.DockerImageAsset(
            scope,
            "Image",
            directory=str(directory),
            file=self._file,
            exclude=list(ASSET_EXCLUDES),
            ignore_mode=cdk.IgnoreMode.DOCKER,
            platform=platform,
            build_args=self._build_args or None,
        )
        _grant_pull(asset.repository, node_role)
        return BoundImage(asset.image_uri)

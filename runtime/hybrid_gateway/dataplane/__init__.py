"""The data plane: `hybrid_vxlan0` and a tunnel entry set per hybrid node, on every replica."""

from hybrid_gateway.core.dataplane import DataPlaneError
from hybrid_gateway.dataplane.service import DataPlane

__all__ = ["DataPlane", "DataPlaneError"]

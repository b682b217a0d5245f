"""The docs' pictures, drawn as SVG from the descriptions below when the site is built.

Each picture is lanes of boxes joined by arrows; text only, so a change is a reviewable diff and
no binary drawing can drift from the words beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

BOX_W, BOX_H, GAP_X, LANE_H, MARGIN = 150, 54, 90, 104, 16
LABEL_H = 22


@dataclass(frozen=True)
class Lane:
    """One row: a caption, its boxes left to right and the labels of the arrows between them."""

    caption: str
    boxes: tuple[str, ...]
    arrows: tuple[str, ...] = ()
    reverse: bool = False  # arrows point right to left (a return path)


@dataclass(frozen=True)
class Picture:
    name: str
    title: str
    lanes: tuple[Lane, ...]


def _box(x: int, y: int, text: str) -> str:
    lines = text.split("\n")
    first = y + BOX_H // 2 - (len(lines) - 1) * 7 + 4
    spans = "".join(
        f'<tspan x="{x + BOX_W // 2}" y="{first + i * 14}">{escape(line)}</tspan>'
        for i, line in enumerate(lines)
    )
    return (
        f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6" '
        f'fill="#eef3fb" stroke="#35598f"/>'
        f'<text text-anchor="middle" font-size="12">{spans}</text>'
    )


def _arrow(x1: int, x2: int, y: int, label: str) -> str:
    mid = (x1 + x2) // 2
    return (
        f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="#333" marker-end="url(#head)"/>'
        f'<text x="{mid}" y="{y - 6}" text-anchor="middle" font-size="10">{escape(label)}</text>'
    )


def render(picture: Picture) -> str:
    """The picture as a standalone SVG document."""
    width = MARGIN * 2 + max(len(lane.boxes) for lane in picture.lanes) * (BOX_W + GAP_X) - GAP_X
    height = MARGIN * 2 + LABEL_H + len(picture.lanes) * LANE_H
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" role="img" aria-label="{escape(picture.title)}">',
        '<defs><marker id="head" markerWidth="8" markerHeight="8" refX="7" refY="4" '
        'orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#333"/></marker></defs>',
        f'<text x="{MARGIN}" y="{MARGIN + 12}" font-size="14" font-weight="bold">'
        f"{escape(picture.title)}</text>",
    ]
    for row, lane in enumerate(picture.lanes):
        top = MARGIN + LABEL_H + row * LANE_H
        parts.append(
            f'<text x="{MARGIN}" y="{top + 12}" font-size="11" fill="#555">'
            f"{escape(lane.caption)}</text>"
        )
        y = top + 20
        for i, text in enumerate(lane.boxes):
            parts.append(_box(MARGIN + i * (BOX_W + GAP_X), y, text))
        for i, label in enumerate(lane.arrows):
            left = MARGIN + i * (BOX_W + GAP_X) + BOX_W
            right = left + GAP_X
            start, end = (right, left) if lane.reverse else (left, right)
            parts.append(_arrow(start, end, y + BOX_H // 2, label))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


PICTURES = (
    Picture(
        "data-path.svg",
        "The data path through the gateway (active/standby leader shown)",
        (
            Lane(
                "VPC to hybrid pod: the VPC route table sends the pod CIDR to the leader's ENI",
                (
                    "VPC host, pod,\nload balancer,\ncontrol plane",
                    "VPC route table\npod CIDR ->\nleader's ENI",
                    "gateway node\nprimary ENI",
                    "hybrid_vxlan0\nroute via node IP",
                    "hybrid node\nCilium -> pod",
                ),
                ("", "", "forward", "VXLAN UDP 8472"),
            ),
            Lane(
                "Hybrid pod to VPC: Cilium's VTEP map sends VPC-bound traffic to the endpoint's "
                "gateway",
                (
                    "VPC host, pod,\nload balancer,\ncontrol plane",
                    "VPC subnet\nrouting",
                    "gateway node\nprimary ENI",
                    "hybrid_vxlan0\ndecapsulates",
                    "hybrid pod\nCilium VTEP map:\nVPC CIDR -> gateway",
                ),
                ("", "", "forward", "VXLAN UDP 8472"),
                reverse=True,
            ),
        ),
    ),
    Picture(
        "ownership.svg",
        "Who writes what: active/standby and active-active",
        (
            Lane(
                "active/standby: one Lease; the leader writes every route and the whole "
                "CiliumVTEPConfig",
                (
                    "Lease\nhybrid-gateway-leader",
                    "leader\n(replica A)",
                    "VPC routes:\nevery pod CIDR",
                    "CiliumVTEPConfig:\nevery endpoint",
                ),
                ("held by", "writes", "and"),
            ),
            Lane(
                "active-active: one Lease per shard; each owner writes only its shard's routes "
                "and endpoints",
                (
                    "Lease\n<id>-shard-i",
                    "owner of shard i\n(any member)",
                    "VPC routes:\nshard i's prefixes",
                    "CiliumVTEPConfig:\nshard i's endpoints",
                ),
                ("held by", "writes", "and"),
            ),
        ),
    ),
)

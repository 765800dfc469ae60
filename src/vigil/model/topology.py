"""Topology: resources and typed, sourced edges between them."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field


class EdgeKind(StrEnum):
    CALLS = "calls"
    RUNS_ON = "runs-on"
    DEPENDS_ON = "depends-on"
    DEPLOYED_BY = "deployed-by"


class EdgeSource(StrEnum):
    TRACES = "traces"
    CONFIG = "config"
    TAGS = "tags"
    MANUAL = "manual"
    KUBERNETES = "kubernetes"
    CLOUDFORMATION = "cloudformation"
    DATASET = "dataset"


class Resource(BaseModel):
    name: str
    kind: str = "service"
    attributes: dict[str, str] = Field(default_factory=dict)


class Edge(BaseModel):
    src: str
    dst: str
    kind: EdgeKind = EdgeKind.CALLS
    source: EdgeSource = EdgeSource.TRACES
    weight: float = 1.0


class Topology(BaseModel):
    resources: list[Resource] = Field(default_factory=list)
    edges: list[Edge] = Field(default_factory=list)

    def callees(self, name: str) -> list[str]:
        return sorted({e.dst for e in self.edges if e.src == name and e.kind in (EdgeKind.CALLS, EdgeKind.DEPENDS_ON)})

    def callers(self, name: str) -> list[str]:
        return sorted({e.src for e in self.edges if e.dst == name and e.kind in (EdgeKind.CALLS, EdgeKind.DEPENDS_ON)})

    def merged(self, *others: Topology) -> Topology:
        """This topology plus others: resources by name (first seen wins, attributes added), and edges
        by (src, dst, kind, source), so an edge learned from two sources is listed once per source."""
        res: dict[str, Resource] = {}
        edges: dict[tuple[str, str, str, str], Edge] = {}
        for topo in (self, *others):
            for r in topo.resources:
                if r.name in res:
                    res[r.name] = res[r.name].model_copy(
                        update={"attributes": {**r.attributes, **res[r.name].attributes}})
                else:
                    res[r.name] = r
            for e in topo.edges:
                edges.setdefault((e.src, e.dst, e.kind.value, e.source.value), e)
        return Topology(resources=list(res.values()), edges=list(edges.values()))

"""Small, generic ONNX graph edits used by the lowerings: uses of a tensor, dead Cast removal, topological order."""

from __future__ import annotations

from collections import defaultdict
from typing import Any


def consumers(graph: Any) -> dict[str, list[tuple[Any, int]]]:
    """tensor name -> [(node, input index)] over the main graph (subgraphs count as uses of their node)."""
    uses: dict[str, list[tuple[Any, int]]] = defaultdict(list)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name:
                uses[name].append((node, i))
        for name in _subgraph_free_inputs(node):
            uses[name].append((node, -1))
    return uses


def _subgraph_free_inputs(node: Any) -> set[str]:
    """Names a node's subgraphs read from the enclosing scope (If/Loop/Scan bodies)."""
    names: set[str] = set()
    for attr in node.attribute:
        graphs = list(attr.graphs) + ([attr.g] if attr.HasField("g") else [])
        for g in graphs:
            produced = (
                {o for n in g.node for o in n.output} | {i.name for i in g.input} | {i.name for i in g.initializer}
            )
            for n in g.node:
                names.update(i for i in n.input if i and i not in produced)
                names.update(_subgraph_free_inputs(n) - produced)
    return names


def remove_dead_nodes(graph: Any, op_types: tuple[str, ...]) -> int:
    """Remove nodes of ``op_types`` whose outputs nobody reads; repeat until none. Returns how many."""
    removed = 0
    outputs = {o.name for o in graph.output}
    while True:
        uses = consumers(graph)
        dead = [
            n
            for n in graph.node
            if n.op_type in op_types and not any(o in outputs or uses.get(o) for o in n.output if o)
        ]
        if not dead:
            return removed
        for n in dead:
            graph.node.remove(n)
        removed += len(dead)


def remove_dead_casts(graph: Any) -> int:
    """Remove Cast nodes whose output nobody reads."""
    return remove_dead_nodes(graph, ("Cast",))


def topological_sort(graph: Any) -> None:
    """Reorder graph.node so every node follows the producers of its inputs (stable: keeps the given
    order where it already is one). Leaves the graph untouched if it has a cycle or dangling input."""
    import heapq

    nodes = list(graph.node)
    producer: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for o in n.output:
            if o:
                producer[o] = i
    dependents: list[list[int]] = [[] for _ in nodes]
    indegree = [0] * len(nodes)
    in_order = True
    for i, n in enumerate(nodes):
        reads = list(n.input)
        if any(a.HasField("g") or len(a.graphs) for a in n.attribute):  # (a walk of its subgraphs otherwise)
            reads += sorted(_subgraph_free_inputs(n))
        deps = {producer[x] for x in reads if x in producer}
        deps.discard(i)
        for d in deps:
            dependents[d].append(i)
            in_order = in_order and d < i
        indegree[i] = len(deps)
    if in_order:  # already sorted: the stable order below would be this one
        return
    ready = [i for i, k in enumerate(indegree) if k == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in dependents[i]:
            indegree[j] -= 1
            if indegree[j] == 0:
                heapq.heappush(ready, j)
    if len(order) != len(nodes):
        return
    sorted_nodes = [nodes[i] for i in order]
    del graph.node[:]
    graph.node.extend(sorted_nodes)


def unique_name(base: str, taken: set[str]) -> str:
    name, i = base, 1
    while name in taken:
        name = f"{base}_{i}"
        i += 1
    taken.add(name)
    return name


__all__ = ["consumers", "remove_dead_casts", "remove_dead_nodes", "topological_sort", "unique_name"]

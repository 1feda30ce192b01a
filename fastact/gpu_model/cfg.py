"""Control flow of a parsed kernel: basic blocks, dominators, natural loops (found by back edges)."""
from __future__ import annotations

from dataclasses import dataclass, field

from .sass import Function, Instruction

_ENDS_BLOCK = {"BRA", "EXIT", "RET", "BRX", "JMP", "JMX", "BREAK", "KILL"}


def successors(function: Function, i: int) -> list[int]:
    """Instruction indices control may go to after instruction i (CALLs return: their target is not followed)."""
    ins = function.instructions[i]
    following = [i + 1] if i + 1 < len(function.instructions) else []
    if ins.opcode == "BRA" and ins.target in function.labels:
        target = [function.index_of(function.labels[ins.target])]
        return target + following if ins.guard and ins.guard not in ("PT",) else target
    if ins.opcode in ("EXIT", "RET"):
        return following if ins.guard and ins.guard != "PT" else []
    return following


@dataclass
class Block:
    start: int  # instruction index
    end: int  # exclusive
    succ: list[int] = field(default_factory=list)  # block starts


def blocks(function: Function) -> dict[int, Block]:
    """Basic blocks by first instruction index (reachable from the entry)."""
    n = len(function.instructions)
    leaders = {0}
    label_addresses = set(function.labels.values())
    for i, ins in enumerate(function.instructions):
        if ins.address in label_addresses:
            leaders.add(i)
        if ins.opcode in _ENDS_BLOCK or ins.opcode == "CALL":
            leaders.update(s for s in successors(function, i))
            if i + 1 < n:
                leaders.add(i + 1)
    starts = sorted(x for x in leaders if x < n)
    result = {}
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else n
        result[start] = Block(start, end, sorted(set(successors(function, end - 1))))
    return result


def dominators(graph: dict[int, Block], entry: int) -> dict[int, set[int]]:
    order, seen, stack = [], set(), [entry]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        order.append(node)
        stack.extend(graph[node].succ)
    preds = {b: [] for b in seen}
    for b in seen:
        for s in graph[b].succ:
            if s in preds:
                preds[s].append(b)
    dom = {b: set(seen) for b in seen}
    dom[entry] = {entry}
    changed = True
    while changed:
        changed = False
        for b in order:
            if b == entry:
                continue
            new = set.intersection(*(dom[p] for p in preds[b])) if preds[b] else set()
            new = new | {b}
            if new != dom[b]:
                dom[b], changed = new, True
    return dom


@dataclass
class Loop:
    header: int  # block start (instruction index)
    latches: list[int]  # blocks with the back edge
    body: set[int]  # block starts


def natural_loops(function: Function) -> list[Loop]:
    """Loops found by back edges (u -> h with h dominating u), merged per header, in code order."""
    graph = blocks(function)
    dom = dominators(graph, 0)
    preds: dict[int, list[int]] = {b: [] for b in graph}
    for b, block in graph.items():
        for s in block.succ:
            preds[s].append(b)
    loops: dict[int, Loop] = {}
    for b in dom:
        for s in graph[b].succ:
            if s in dom.get(b, ()):  # back edge b -> s
                loop = loops.setdefault(s, Loop(s, [], {s}))
                loop.latches.append(b)
                stack = [b]
                while stack:
                    node = stack.pop()
                    if node not in loop.body:
                        loop.body.add(node)
                        stack.extend(p for p in preds[node] if p in dom)
    return [loops[h] for h in sorted(loops)]


def loop_instructions(function: Function, loop: Loop) -> list[Instruction]:
    graph = blocks(function)
    return [function.instructions[i] for b in sorted(loop.body) for i in range(graph[b].start, graph[b].end)]

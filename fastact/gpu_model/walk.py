"""The path one iteration of a loop issues: the heart of the model.
  Starting at a loop's header it
follows the instructions a warp issues for one iteration, until it is back
at the header:

* a branch whose predicate is known (values.py: computed from the kernel's
  parameters, e.g. ``Gelu::approximate`` or ``Relu::has_max``, read from the
  constant bank, from immediates, or from a loop counter) goes where the
  launch sends it: the model is run once per parameter set (leaky_relu,
  relu6, gelu exact and tanh, ...), and an inner loop decided that way runs
  its real trip count;
* a branch that leaves the loop (its exit test) stays inside it;
* any other branch depends on the data (``isnan(x)``, the IEEE division's
  range check, ``x > 0``...).  It is counted as a *divergent* branch and the
  walk takes the common path: not the side of special operands (where a test
  for NaN or infinity, an all-ones exponent field or FCHK holds:
  ``rare_value``), not a side that calls an out-of-line routine (the
  division/reciprocal slow path runs only for denormal or huge operands), else
  the fall-through side, the one the compiler lays out as likely.  Whether
  lanes of a warp actually disagree depends on the data: the column counts
  the branches, it does not guess their outcome;
* an undecided back edge of an inner loop is left after one trip (the caller
  adds the other trips).

Every instruction on the path counts as issued once, predicated-off ones too
(they issue); ``CALL``\\ s are not followed.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .cfg import Loop, blocks, successors
from .sass import Function, Instruction
from .values import State, entry_states, step

@dataclass
class Path:
    instructions: list[Instruction]
    divergent_branches: int
    calls_skipped: int
    complete: bool  # came back to the header
    # The other sides of the data-dependent branches (those that call no
    # out-of-line routine), up to where they rejoin the path: what a warp
    # whose lanes disagree issues on top of the path.
    other_sides: list[Instruction] = field(default_factory=list)


def _side_calls(function: Function, index: int) -> bool:
    """Does the straight-line code from ``index`` up to its next branch make a CALL?"""
    for ins in function.instructions[index:index + 16]:
        if ins.opcode == "CALL":
            return True
        if ins.opcode in ("BRA", "EXIT", "RET", "BSYNC"):
            return False
    return False


_EXPONENT_ALL_ONES = {"0x7f800000", "0x7f7fffff", "0x7ff00000", "0x7fefffff"}
_SWAPPED = {"LT": "GT", "GT": "LT", "LE": "GE", "GE": "LE", "EQ": "EQ", "NE": "NE"}


def rare_value(ins: Instruction) -> bool | None:
    """For a comparison that singles out special operands, the predicate value that means "special": True for
    FCHK (a division or reciprocal that needs its slow path), x == INF, |x| > INF (NaN), .NAN, an exponent field
    of all ones (ISETP .U32 x >= 0x7f800000: the math library's inf/NaN checks); False for the negations
    (x != -INF, x < +INF, .NUM).  None for any other comparison, or one combined with another predicate."""
    if ins.opcode == "FCHK":
        return True
    if ins.opcode not in ("FSETP", "DSETP", "ISETP") or (len(ins.operands) > 4 and ins.operands[4] != "PT"):
        return None
    cmp = ins.modifiers[0]
    if ins.opcode != "ISETP" and cmp in ("NAN", "NUM"):
        return cmp == "NAN"
    a, b = (o.strip().lstrip("|").rstrip("|") for o in ins.operands[2:4])
    op = cmp[:2]
    if ins.opcode == "ISETP":
        if "U32" not in ins.modifiers or op in ("EQ", "NE"):
            return None
        if b in _EXPONENT_ALL_ONES:
            return op in ("GT", "GE")
        if a in _EXPONENT_ALL_ONES:
            return _SWAPPED[op] in ("GT", "GE")
        return None
    if b.lstrip("+-") != "INF":
        if a.lstrip("+-") != "INF":
            return None
        a, b, op = b, a, _SWAPPED[op]
    if op in ("EQ", "NE"):
        return op == "EQ"
    upward = op in ("GT", "GE")  # x above the infinity b
    return upward if not b.startswith("-") else not upward


def _copy(state: State) -> State:
    return State(state.params, dict(state.values))


# An inner loop whose test is known from the parameters and constants (a
# chunk loop over a row of known length, a loop over a block's warps) is run
# for its real trip count, up to this many trips.
_MAX_TRIPS = 256


def _follow(function: Function, start: int, state: State, body: set[int], header: int, stop: set[int] | None,
            max_steps: int) -> tuple[list[Instruction], int, int, bool, list]:
    """Walk from ``start``; stop at the header, outside the body, or (for another side) at an index in ``stop``.

    Returns (instructions, divergent branches, calls, back at the header, [(other side, state there)]).
    """
    path, divergent, calls, others = [], 0, 0, []
    defined_by: dict[str, Instruction] = {}  # predicate -> the comparison that last set it on the path
    i = start
    visits: Counter = Counter()
    for _ in range(max_steps):
        if stop is not None and i in stop:
            return path, divergent, calls, False, others
        ins = function.instructions[i]
        visits[i] += 1
        if visits[i] > _MAX_TRIPS:
            raise RuntimeError(f"{function.symbol}: the walk from {function.instructions[header]!r} runs in circles at {ins!r}")
        path.append(ins)
        if ins.opcode == "CALL":
            calls += 1
        if ins.opcode.endswith("SETP") or ins.opcode == "FCHK":
            defined_by[ins.operands[0].lstrip("!")] = ins
        step(state, ins)
        nexts = successors(function, i)
        if ins.opcode in ("BRA", "EXIT", "RET") and len(nexts) == 2:
            taken, fall = nexts
            if ins.opcode != "BRA":
                taken, fall = None, nexts[0]
            known = state.guard(ins.guard)
            if known is True:
                i = taken
            elif known is False:
                i = fall
            elif taken is not None and taken <= i and taken in body and fall in body:
                i = fall  # an inner loop's back edge, undecided: leave after one trip (not a divergent branch)
            else:
                inside = [n for n in (taken, fall) if n is not None and n in body]
                if len(inside) == 1:
                    i = inside[0]  # the loop's own exit test: stay
                elif not inside:
                    return path, divergent, calls, False, others
                else:
                    divergent += 1
                    test = defined_by.get(ins.guard.lstrip("!"))
                    rare = None if test is None else rare_value(test)
                    if rare is not None:  # never the side of the special operands
                        i = fall if rare == (not ins.guard.startswith("!")) else taken
                    elif _side_calls(function, fall) and not _side_calls(function, taken):
                        i = taken
                    else:
                        i = fall
                    other = fall if i == taken else taken
                    if not _side_calls(function, other):
                        others.append((other, _copy(state)))
        elif not nexts:
            return path, divergent, calls, False, others
        else:
            i = nexts[0]
        if i == header:
            return path, divergent, calls, True, others
        if i not in body:
            return path, divergent, calls, False, others
    raise RuntimeError(f"{function.symbol}: no way back to the loop header at {function.instructions[header]!r}")


def walk(function: Function, loop: Loop, params: bytes, max_steps: int = 100_000) -> Path:
    """One iteration of ``loop`` along the path described in the module docstring."""
    graph = blocks(function)
    body = {i for b in loop.body for i in range(graph[b].start, graph[b].end)}
    state = State(params, entry_states(function, params).get(loop.header, {}))
    path, divergent, calls, complete, others = _follow(function, loop.header, state, body, loop.header, None, max_steps)
    on_path = {function.index_of(ins.address) for ins in path}
    extra = []
    for start, at in others:
        side = _follow(function, start, at, body, loop.header, on_path, max_steps)[0]
        extra += side
    return Path(path, divergent, calls, complete, extra)

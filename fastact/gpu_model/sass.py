"""SASS as printed by ``nvdisasm``: functions, basic blocks, loops, and the path one loop iteration issues.

The path walk is the heart of the model.  Starting at a loop's header it
follows the instructions a warp issues for one iteration, until it is back
at the header:

* a branch whose predicate is known (computed from the kernel's parameters,
  e.g. ``Gelu::approximate`` or ``Relu::has_max``, read from the constant
  bank, or from immediates) goes where the launch sends it: the model is
  run once per parameter set (leaky_relu, relu6, gelu exact and tanh, ...);
* a branch that leaves the loop (its exit test) stays inside it;
* any other branch depends on the data (``isnan(x)``, the IEEE division's
  range check, ``x > 0``...).  It is counted as a *divergent* branch and the
  walk takes the common path: the side that does not call an out-of-line
  routine (the division/reciprocal slow path runs only for denormal or huge
  operands), else the fall-through side, the one the compiler lays out as
  likely.  Whether lanes of a warp actually disagree depends on the data:
  the column counts the branches, it does not guess their outcome.

Every instruction on the path counts as issued once, predicated-off ones too
(they issue); ``CALL``\\ s are not followed.
"""
from __future__ import annotations

import re
import struct
from collections import Counter
from dataclasses import dataclass, field

# --------------------------------------------------------------------------- #
# Parsing
# --------------------------------------------------------------------------- #
_INSTRUCTION = re.compile(r"^\s*/\*([0-9a-f]{4,})\*/\s+(@!?U?P[0-6T]\s+)?([A-Z0-9_]+)((?:\.[A-Za-z0-9_]+)*)\s*(.*?)\s*;")
_LABEL = re.compile(r"^(\.L_x_\d+|\$[^:\s]+|[A-Za-z_][\w$.]*):\s*$")
_SECTION = re.compile(r"^\.text\.(\S+):\s*$")
_TARGET = re.compile(r"`\(([^)]+)\)")


@dataclass
class Instruction:
    address: int
    guard: str | None  # "P0", "!P0", "UP1", ... or None
    opcode: str  # "LDG"
    modifiers: tuple[str, ...]  # ("E", "128")
    operands: list[str]
    text: str
    target: str | None = None  # branch/call label

    @property
    def name(self) -> str:
        return ".".join((self.opcode, *self.modifiers))

    def __repr__(self) -> str:
        return f"/*{self.address:04x}*/ {self.text}"


@dataclass
class Function:
    symbol: str
    instructions: list[Instruction]
    labels: dict[str, int]  # label -> address

    def index_of(self, address: int) -> int:
        return self._index[address]

    def __post_init__(self):
        self._index = {ins.address: i for i, ins in enumerate(self.instructions)}


def _split_operands(text: str) -> list[str]:
    operands, depth, current = [], 0, ""
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            operands.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        operands.append(current.strip())
    return operands


def parse(disassembly: str) -> dict[str, Function]:
    """Every kernel's code section of ``nvdisasm -c`` output, by mangled symbol (subroutines stay in their section)."""
    functions: dict[str, Function] = {}
    symbol, instructions, labels = None, [], {}
    pending_labels: list[str] = []

    def close():
        if symbol is not None:
            functions[symbol] = Function(symbol, instructions, labels)

    for line in disassembly.splitlines():
        if match := _SECTION.match(line):
            close()
            symbol, instructions, labels, pending_labels = match.group(1), [], {}, []
            continue
        if symbol is None:
            continue
        if match := _LABEL.match(line.strip()):
            pending_labels.append(match.group(1))
            continue
        if match := _INSTRUCTION.match(line):
            address = int(match.group(1), 16)
            for label in pending_labels:
                labels[label] = address
            pending_labels = []
            guard = match.group(2).strip()[1:] if match.group(2) else None
            rest = match.group(5)
            target = None
            if t := _TARGET.search(rest):
                target = t.group(1)
            instructions.append(Instruction(address, guard, match.group(3), tuple(m for m in match.group(4).split(".") if m),
                                            _split_operands(_TARGET.sub("", rest)), line.split("*/", 1)[1].strip().rstrip(";").strip(), target))
    close()
    return functions


# --------------------------------------------------------------------------- #
# Control flow: basic blocks, dominators, natural loops
# --------------------------------------------------------------------------- #
_ENDS_BLOCK = {"BRA", "EXIT", "RET", "BRX", "JMP", "JMX", "BREAK", "KILL"}


def is_branch(ins: Instruction) -> bool:
    return ins.opcode == "BRA" and ins.target is not None


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


# --------------------------------------------------------------------------- #
# Known values: the kernel's parameters in the constant bank, immediates
# --------------------------------------------------------------------------- #
PARAM_BASE = 0x210  # first kernel parameter in c[0x0][...] on sm_90 (and sm_70..sm_89)
_CONST = re.compile(r"^(-?)(\|?)c\[0x0\]\[(0x[0-9a-f]+)\](\|?)$")
_REG = re.compile(r"^(-?)(!?)(\|?)(U?R[0-9]+|U?RZ|U?P[0-6T])(?:\.reuse)?(?:\.(H0_H0|H1_H1|B\d|X4|64|U32))?(\|?)$")


def _as_float(bits: int) -> float:
    return struct.unpack("<f", struct.pack("<I", bits & 0xFFFFFFFF))[0]


def _as_int(bits: int) -> int:
    bits &= 0xFFFFFFFF
    return bits - (1 << 32) if bits >> 31 else bits


def _immediate(token: str):
    """An immediate's 32-bit pattern, or None (floats as float32 bits)."""
    token = token.strip()
    if token in ("+INF", "INF"):
        return 0x7F800000
    if token == "-INF":
        return 0xFF800000
    if token in ("+QNAN", "QNAN"):
        return 0x7FFFFFFF
    try:
        if token.lower().startswith(("0x", "-0x")):
            return int(token, 16) & 0xFFFFFFFF
        if re.fullmatch(r"-?\d+", token):
            return int(token) & 0xFFFFFFFF
        value = float(token)
    except ValueError:
        return None
    return struct.unpack("<I", struct.pack("<f", value))[0]


class State:
    """Registers and predicates known on the walk: 32-bit patterns and booleans."""

    def __init__(self, params: bytes, known: dict | None = None):
        self.params = params
        self.values: dict[str, object] = dict(known or {})

    def const(self, offset: int, words: int = 1):
        start = offset - PARAM_BASE
        if start < 0 or start + 4 * words > len(self.params):
            return None
        return [struct.unpack_from("<I", self.params, start + 4 * k)[0] for k in range(words)]

    def read(self, token: str, *, is_float: bool = False):
        """An operand's 32-bit value (None if unknown); |x| and -x applied for floats."""
        token = token.strip()
        if token in ("RZ", "URZ"):
            return 0
        if token == "PT":
            return True
        if match := _CONST.match(token):
            words = self.const(int(match.group(3), 16))
            value = None if words is None else words[0]
            if value is not None and is_float:
                value = _float_mods(value, match.group(1), match.group(2))
            return value
        if match := _REG.match(token):
            neg, bang, bar, name = match.group(1), match.group(2), match.group(3), match.group(4)
            if name == "PT":
                return not bang
            value = self.values.get(name)
            if value is None:
                return None
            if isinstance(value, bool):
                return (not value) if bang else value
            if match.group(5):  # a half of a register: not tracked
                return None
            return _float_mods(value, neg, bar) if is_float else (_neg_int(value) if neg else value)
        return _immediate(token)

    def set(self, name: str, value):
        if name in ("RZ", "URZ", "PT", "UPT"):
            return
        if value is None:
            self.values.pop(name, None)
        else:
            self.values[name] = value

    def guard(self, guard: str | None):
        """True, False or None (unknown) for an instruction's @guard."""
        if guard is None:
            return True
        negate = guard.startswith("!")
        name = guard.lstrip("!")
        if name in ("PT", "UPT"):
            return not negate
        value = self.values.get(name)
        if value is None:
            return None
        return (not value) if negate else value


def _float_mods(bits: int, neg: str, bar: str) -> int:
    if bar:
        bits &= 0x7FFFFFFF
    if neg:
        bits ^= 0x80000000
    return bits


def _neg_int(bits: int) -> int:
    return (-bits) & 0xFFFFFFFF


_CMP = {
    "EQ": lambda a, b: a == b, "NE": lambda a, b: a != b, "LT": lambda a, b: a < b,
    "LE": lambda a, b: a <= b, "GT": lambda a, b: a > b, "GE": lambda a, b: a >= b,
}


def _float_compare(op: str, a: float, b: float) -> bool:
    unordered = a != a or b != b
    if op == "NAN":
        return unordered
    if op == "NUM":
        return not unordered
    if op.endswith("U") and op[:-1] in _CMP:
        return unordered or _CMP[op[:-1]](a, b)
    if op == "NEU":
        return unordered or a != b
    return (not unordered) and _CMP[op](a, b)


def _combine(mode: str, value: bool, other) -> bool | None:
    if other is None:
        return None
    return {"AND": value and other, "OR": value or other, "XOR": value != other}[mode]


def _destinations(ins: Instruction) -> list[str]:
    """Registers/predicates an instruction may write (conservative)."""
    if ins.opcode in ("ST", "STG", "STS", "STL", "RED", "BRA", "BSSY", "BSYNC", "EXIT", "RET", "CALL", "BAR",
                      "WARPSYNC", "NOP", "MEMBAR", "FENCE", "ERRBAR", "CCTL", "DEPBAR", "YIELD"):
        return []
    names = []
    for k, token in enumerate(ins.operands[:2]):
        match = _REG.match(token.strip())
        if match and (k == 0 or re.fullmatch(r"U?P[0-6]", match.group(4))):
            names.append(match.group(4))
    wide = 1
    mods = set(ins.modifiers)
    if mods & {"64", "WIDE", "F64"} or ins.opcode.startswith("D"):
        wide = 2
    if "128" in mods:
        wide = 4
    out = []
    for name in names:
        out.append(name)
        if re.fullmatch(r"U?R\d+", name):
            prefix = "UR" if name.startswith("UR") else "R"
            base = int(name[len(prefix):])
            out += [f"{prefix}{base + k}" for k in range(1, wide)]
    return out


def step(state: State, ins: Instruction) -> None:
    """Update the known values after ``ins`` executes (unknown results forget the destination)."""
    guard = state.guard(ins.guard)
    dests = _destinations(ins)
    if guard is False:
        return
    results = _evaluate(state, ins)
    for k, name in enumerate(dests):
        value = results.get(name) if results else None
        if guard is None and value != state.values.get(name):
            value = None
        state.set(name, value)


def _evaluate(state: State, ins: Instruction) -> dict | None:
    op, mods, ops = ins.opcode, ins.modifiers, ins.operands
    try:
        if op in ("LDC", "ULDC") and ops and (m := _CONST.match(ops[1])):
            words = 2 if "64" in mods else 1
            values = state.const(int(m.group(3), 16), words)
            if values is None or any(x in mods for x in ("U8", "S8", "U16", "S16")):
                return None
            reg = _REG.match(ops[0]).group(4)
            prefix = "UR" if reg.startswith("UR") else "R"
            base = int(reg[len(prefix):])
            return {f"{prefix}{base + k}": v for k, v in enumerate(values)}
        if op in ("MOV", "UMOV", "MOV32I", "R2UR"):
            return {_REG.match(ops[0]).group(4): state.read(ops[1])}
        if op == "IMAD" and "MOV" in mods and len(ops) == 4 and ops[1] == "RZ" and ops[2] == "RZ":
            return {_REG.match(ops[0]).group(4): state.read(ops[3])}
        # 32-bit integer arithmetic on known values (loop counters): no carries, no wide or high forms.
        plain = not (set(mods) & {"WIDE", "HI", "X", "SHL", "U64", "64"})
        if plain and op in ("IADD3", "UIADD3", "IMAD", "UIMAD", "VIADD", "LEA", "ULEA") \
                and not any(re.fullmatch(r"!?U?P[0-6T]", o) for o in ops[1:]):
            values = [state.read(o) for o in ops[1:]]
            if any(v is None for v in values):
                return None
            if op in ("IADD3", "UIADD3") and len(values) == 3:
                result = sum(values)
            elif op in ("IMAD", "UIMAD") and len(values) == 3:
                result = values[0] * values[1] + values[2]
            elif op == "VIADD" and len(values) == 2:
                result = values[0] + values[1]
            elif op in ("LEA", "ULEA") and len(values) == 3:
                result = (values[0] << (values[2] & 31)) + values[1]
            else:
                return None
            return {_REG.match(ops[0]).group(4): result & 0xFFFFFFFF}
        if op in ("ISETP", "UISETP", "FSETP"):
            cmp, mode = mods[0], mods[-1]
            is_float = op == "FSETP"
            a, b = state.read(ops[2], is_float=is_float), state.read(ops[3], is_float=is_float)
            other = state.read(ops[4]) if len(ops) > 4 else True
            if a is None or b is None:
                return None
            if is_float:
                value = _float_compare(cmp, _as_float(a), _as_float(b))
            elif "U32" in mods:
                value = _CMP[cmp](a & 0xFFFFFFFF, b & 0xFFFFFFFF)
            else:
                value = _CMP[cmp](_as_int(a), _as_int(b))
            return {_REG.match(ops[0]).group(4): _combine(mode, value, other)}
    except (AttributeError, IndexError, KeyError):
        return None
    return None


def _meet(a: dict, b: dict) -> dict:
    return {k: v for k, v in a.items() if b.get(k) == v}


def _taken_successors(function: Function, block: Block, state: State) -> list[int]:
    """A block's successors, less the side of a final branch whose predicate is known not to go there."""
    last = function.instructions[block.end - 1]
    if last.opcode == "BRA" and last.guard and len(block.succ) == 2 and last.target in function.labels:
        known = state.guard(last.guard)
        if known is not None:
            target = function.index_of(function.labels[last.target])
            return [target] if known else [block.end]
    return block.succ


def entry_states(function: Function, params: bytes) -> dict[int, dict]:
    """Known values at the start of every basic block the parameters let control reach: constant propagation
    over the CFG (meet: values that agree), not following a branch side a known predicate rules out.
    (The compiler versions loops on parameters: relu's has_max, gelu's approximate.)"""
    graph = blocks(function)
    states: dict[int, dict] = {0: {}}
    work = [0]
    while work:
        b = work.pop()
        state = State(params, states[b])
        block = graph[b]
        for i in range(block.start, block.end):
            step(state, function.instructions[i])
        for s in _taken_successors(function, block, state):
            new = dict(state.values) if s not in states else _meet(states[s], state.values)
            if s not in states or new != states[s]:
                states[s] = new
                work.append(s)
    return states


# --------------------------------------------------------------------------- #
# The walk
# --------------------------------------------------------------------------- #
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
            elif taken is not None and taken in body and fall in body and (visits[taken] or visits[fall]) \
                    and not (visits[taken] and visits[fall]):
                i = fall if visits[taken] else taken  # an inner loop's test: leave it, not a divergent branch
            else:
                inside = [n for n in (taken, fall) if n is not None and n in body]
                if len(inside) == 1:
                    i = inside[0]  # the loop's own exit test: stay
                elif not inside:
                    return path, divergent, calls, False, others
                else:
                    divergent += 1
                    i = taken if _side_calls(function, fall) and not _side_calls(function, taken) else fall
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


# --------------------------------------------------------------------------- #
# Instruction classes
# --------------------------------------------------------------------------- #
CLASSES = ("fp32", "fp16x2", "fp64", "mufu", "conversion", "integer", "control", "memory", "other")

_FP32 = {"FADD", "FMUL", "FFMA", "FMNMX", "FSETP", "FSEL", "FSET", "FCHK", "FADD32I", "FMUL32I", "FFMA32I", "FSWZADD"}
_FP16 = {"HADD2", "HMUL2", "HFMA2", "HMNMX2", "HSETP2", "HSET2"}
_FP64 = {"DADD", "DMUL", "DFMA", "DSETP", "DMNMX"}
_CONVERSION = {"F2F", "F2FP", "I2F", "F2I", "FRND", "I2FP", "F2IP", "I2I"}
_INTEGER = {"IADD3", "IMAD", "LOP3", "SHF", "LEA", "ISETP", "IMNMX", "POPC", "FLO", "IABS", "SEL", "PRMT", "BMSK",
            "SGXT", "BREV", "IDP", "IMUL", "IADD", "LOP", "SHL", "SHR", "IMADSP", "VIADD", "VIMNMX", "IADD32I"}
_CONTROL = {"BRA", "BSSY", "BSYNC", "WARPSYNC", "CALL", "RET", "EXIT", "BAR", "NOP", "YIELD", "PLOP3", "P2R", "R2P",
            "VOTE", "VOTEU", "BREAK", "BRX", "JMP", "KILL", "NANOSLEEP", "ELECT"}
_MEMORY = {"LDG", "STG", "LD", "ST", "LDS", "STS", "LDL", "STL", "ATOM", "ATOMG", "ATOMS", "RED", "LDSM", "LDGSTS",
           "LDC", "ULDC", "LDGDEPBAR"}


def classify(ins: Instruction) -> str:
    op = ins.opcode
    if op == "MUFU":
        return "mufu"
    if op == "HADD2" and "F32" in ins.modifiers:  # HADD2.F32 R, -RZ, R.H0_H0: float16 -> float32
        return "conversion"
    if op == "HFMA2" and "MMA" in ins.modifiers and ins.operands[1:3] == ["-RZ", "RZ"]:
        return "other"  # a constant materialized through the FMA pipe (a move)
    if op == "IMAD" and "MOV" in ins.modifiers:
        return "other"  # IMAD.MOV.U32 d, RZ, RZ, s: a move
    for name, table in (("fp32", _FP32), ("fp16x2", _FP16), ("fp64", _FP64), ("conversion", _CONVERSION),
                        ("integer", _INTEGER), ("control", _CONTROL), ("memory", _MEMORY)):
        if op in table:
            return name
    return "other"


def is_conversion64(ins: Instruction) -> bool:
    """A conversion to or from a 64-bit type (F2F.F64.F32, I2F.F64, F2I.S64, ...): 16 per clock per SM on sm_90."""
    return ins.opcode in ("F2F", "I2F", "F2I", "FRND", "I2I") and any(m.endswith("64") for m in ins.modifiers)


def is_global_access(ins: Instruction) -> bool:
    return ins.opcode in ("LDG", "STG") or (ins.opcode in ("LD", "ST") and "desc" in " ".join(ins.operands))


def access_bytes(ins: Instruction) -> int:
    """Bytes one thread moves with a load or store."""
    for mod, size in (("128", 16), ("64", 8), ("U16", 2), ("S16", 2), ("U8", 1), ("S8", 1)):
        if mod in ins.modifiers:
            return size
    return 4


@dataclass
class Counts:
    total: int
    by_class: Counter
    mufu: int
    global_loads: list[int]  # bytes per load on the path
    global_stores: list[int]
    local_accesses: int


def count(path: Path) -> Counts:
    by_class = Counter(classify(ins) for ins in path.instructions)
    loads = [access_bytes(ins) for ins in path.instructions if is_global_access(ins) and ins.opcode.startswith("LD")]
    stores = [access_bytes(ins) for ins in path.instructions if is_global_access(ins) and ins.opcode.startswith("ST")]
    local = sum(1 for ins in path.instructions if ins.opcode in ("LDL", "STL"))
    return Counts(len(path.instructions), by_class, by_class["mufu"], loads, stores, local)

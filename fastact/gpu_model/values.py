"""Values known before the kernel runs: its parameters in the constant bank, immediates, and what follows from them.

The walk (walk.py) decides a branch when its predicate is known here: a
comparison of a parameter (``Relu::has_max``, ``Gelu::approximate``, a row
length) or of a loop counter with a constant.  Anything computed from the data
or the thread's index is unknown.
"""
from __future__ import annotations

import re
import struct

from .cfg import Block, blocks
from .sass import Function, Instruction

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

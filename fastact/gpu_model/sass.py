"""SASS as printed by ``nvdisasm -c``: instructions, one function per kernel, instruction classes and counts."""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

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

"""What a pickle would import, read without unpickling it.

Unpickling can call any importable function, so files from elsewhere (checkpoints, CIFAR
batches) are scanned first and refused when they name anything outside an allow-list.

>>> import pickle
>>> pickle_globals(pickle.dumps({"labels": [1, 2]}))
[]
>>> pickle_globals(pickle.dumps(print))
['builtins.print']
"""

from __future__ import annotations

import contextlib
import pickletools


def pickle_globals(data: bytes) -> list[str]:
    """The ``module.name`` globals the pickle ``data`` would import, in order, each once.

    Read opcode by opcode with :mod:`pickletools` (nothing is executed); a malformed pickle
    yields the globals found before the point where it stops making sense.
    """
    found: list[str] = []
    strings: list[str] = []  # string values pushed so far (a module and name precede STACK_GLOBAL)
    memo: dict[int, str | None] = {}  # memo slot -> the string stored there, if a string
    top: str | None = None  # the last value pushed, when it is a string
    with contextlib.suppress(Exception):
        for opcode, arg, _pos in pickletools.genops(data):
            name = opcode.name
            if name == "GLOBAL" and isinstance(arg, str):
                found.append(arg.replace(" ", "."))
                top = None
            elif name == "STACK_GLOBAL":
                if len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
                top = None
            elif name == "MEMOIZE":  # stores the top of the stack in the next slot
                memo[len(memo)] = top
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(arg)] = top
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                top = memo.get(int(arg))
                if top is not None:
                    strings.append(top)
            elif isinstance(arg, str):
                strings.append(arg)
                top = arg
            else:
                top = None
    return list(dict.fromkeys(found))

"""Import TVM the way this project needs it.

``import tvm.s_tir.tensor_intrin`` takes 33-40 s per process on a small CPU host (most of it
parsing CUDA tensor-core intrinsics), and MetaSchedule's TuneContext and every builder worker
import it. No design space this project generates tensorizes (the ``llvm`` and ``cuda``
schedule rules, not ``cuda-tensorcore``), so a light stand-in module is registered before
MetaSchedule asks for it. Set ``COLT_REAL_TENSOR_INTRIN=1`` to load the real intrinsics in a
long-lived process that needs them.
"""

from __future__ import annotations

import os
import sys
import types

_STUB = "tvm.s_tir.tensor_intrin"


def install_tensor_intrin_stub() -> None:
    if os.environ.get("COLT_REAL_TENSOR_INTRIN") == "1" or _STUB in sys.modules:
        return
    stub = types.ModuleType(_STUB)
    stub.__doc__ = "COLT stand-in: tensor intrinsics are not registered in this process."
    sys.modules[_STUB] = stub


def tvm():
    """Return the ``tvm`` package with the stand-in installed first."""
    install_tensor_intrin_stub()
    import tvm as _tvm

    return _tvm

"""One place that maps (op, backend) to a callable; the model calls kernels only through here.

Backends (every one has the same signature and no parameters of its own, so a state_dict moves between them):

- ``torch``:  :mod:`kernels.reference`, eager fp32 math — the truth.
- ``native``: torch's own fused paths — ``F.rms_norm``, ``F.silu(a) * b``, reference RoPE, and
  ``F.scaled_dot_product_attention`` with a boolean padding/window/dilation mask.
- ``triton``: the Triton kernels in ``kernels/<op>.py`` (imported on first use, never at import time).
- ``auto``:   ``triton`` on CUDA with compute capability >= 7.0 and Triton installed, ``native`` elsewhere (CPU, and
  P100 = sm_60, which Triton does not support). On CPU ``native`` is the best eager path: its SDPA (flash-style CPU
  kernel) runs attention 1.4-1.6x faster than the reference in benchmarks/test_kernels.py, and its norm and gate
  match the reference's speed; Triton on CPU only exists as the numpy interpreter (a correctness tool, ~1 ms per
  program). Under torch.compile the native ops are fused further by inductor.

``KernelConfig`` picks a backend per op family; ``residual_rmsnorm`` follows the ``rmsnorm`` field and
``swiglu_packed`` the ``swiglu`` field. The ``rope`` field chooses the RoPE of the attention op: ``auto`` is the
attention backend's own (fused into the Triton kernel; the reference's for torch and native); another backend runs
RoPE first and then the attention without it (``attention=native,rope=triton``: Triton RoPE, then SDPA). Triton's
kernel takes no other RoPE, so ``attention=triton`` with ``rope`` torch or native is refused. Its string form
(``"attention=triton,rmsnorm=torch"``) is what the CLI takes.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

from kernels._triton_utils import compiled_triton_imported, interpreting

__all__ = [
    "BACKENDS",
    "OPS",
    "KernelConfig",
    "KernelUnavailableError",
    "get_op",
    "triton_status",
]

BACKENDS: tuple[str, ...] = ("auto", "torch", "native", "triton")
CONCRETE_BACKENDS: tuple[str, ...] = ("torch", "native", "triton")
FIELDS: tuple[str, ...] = ("rmsnorm", "swiglu", "rope", "attention")
# op name -> the KernelConfig field that chooses its backend
OPS: dict[str, str] = {
    "rmsnorm": "rmsnorm",
    "residual_rmsnorm": "rmsnorm",
    "swiglu": "swiglu",
    "swiglu_packed": "swiglu",
    "rope": "rope",
    "attention": "attention",
}
# op name -> (module, function) of the Triton implementation, imported on first use
_TRITON_ENTRIES: dict[str, tuple[str, str]] = {
    "rmsnorm": ("kernels.rmsnorm", "rmsnorm"),
    "residual_rmsnorm": ("kernels.rmsnorm", "residual_rmsnorm"),
    "swiglu": ("kernels.swiglu", "swiglu"),
    "swiglu_packed": ("kernels.swiglu", "swiglu_packed"),
    "rope": ("kernels.rope", "rope"),
    "attention": ("kernels.attention", "rope_attention"),
}
MIN_CAPABILITY = (7, 0)


class KernelUnavailableError(RuntimeError):
    """A backend was asked for where it cannot run (names the op, the device and the reason)."""


def _check_name(kind: str, name: str, valid: tuple[str, ...] | dict[str, str]) -> None:
    if name not in valid:
        raise ValueError(f"unknown {kind} {name!r}; valid: {', '.join(valid)}")


@functools.cache
def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def triton_status(device: torch.device | str) -> tuple[bool, str]:
    """Whether Triton kernels can run on `device`, and the reason when they cannot."""
    device = torch.device(device)
    if not _triton_installed():
        return False, "triton is not installed"
    if interpreting():
        if compiled_triton_imported():
            return False, ("TRITON_INTERPRET=1 was set after triton was imported without it (triton.jit fixes the "
                           "mode at import); set it before anything imports triton")
        return True, "TRITON_INTERPRET=1 (numpy interpreter)"
    return _cuda_status(device)


def _cuda_status(device: torch.device) -> tuple[bool, str]:
    """The one compute-capability check: compiled Triton kernels need CUDA with sm >= 7.0."""
    if device.type != "cuda":
        return False, f"Triton needs a CUDA device, got {device.type!r} (TRITON_INTERPRET=1 runs it on CPU, slowly)"
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < MIN_CAPABILITY:
        return False, (f"compute capability {major}.{minor} < {MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]} "
                       f"is not supported by Triton (e.g. P100 is sm_60)")
    return True, f"CUDA compute capability {major}.{minor}"


def _auto_backend(device: torch.device | str) -> str:
    """Concrete backend that ``auto`` means on `device` (never the interpreter: it is for tests only)."""
    return "triton" if _triton_installed() and _cuda_status(torch.device(device))[0] else "native"


@dataclass(frozen=True)
class KernelConfig:
    """Backend per op family: each field is "auto" | "torch" | "native" | "triton"."""

    rmsnorm: str = "auto"  # also chooses residual_rmsnorm
    swiglu: str = "auto"  # also chooses swiglu_packed
    rope: str = "auto"  # the RoPE before attention: "auto" = the attention backend's own; see _check_rope
    attention: str = "auto"  # RoPE attention: triton fuses RoPE into its kernel, torch and native run it first

    def __post_init__(self) -> None:
        for field in FIELDS:
            value = getattr(self, field)
            if not isinstance(value, str):
                raise TypeError(f"KernelConfig.{field} must be a str, got {type(value).__name__}")
            _check_name(f"backend for {field}", value, BACKENDS)

    @classmethod
    def parse(cls, spec: str) -> KernelConfig:
        """Build from "attention=triton,rmsnorm=torch" (unnamed fields stay "auto"); a bare backend sets all."""
        spec = spec.strip()
        if not spec:
            return cls()
        if "=" not in spec and "," not in spec:
            _check_name("backend", spec, BACKENDS)
            return cls(**dict.fromkeys(FIELDS, spec))
        values: dict[str, str] = {}
        for item in spec.split(","):
            item = item.strip()
            if not item:
                continue
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"kernel config item {item!r} must look like op=backend (in {spec!r})")
            key, value = key.strip(), value.strip()
            _check_name("kernel config field", key, FIELDS)
            if key in values:
                raise ValueError(f"kernel config field {key!r} given twice in {spec!r}")
            values[key] = value
        return cls(**values)

    def __str__(self) -> str:
        return ",".join(f"{f}={getattr(self, f)}" for f in FIELDS)

    def to_dict(self) -> dict[str, str]:
        """Plain dict of field -> backend (for run configs and checkpoints)."""
        return dataclasses.asdict(self)

    def resolve(self, device: torch.device | str) -> KernelConfig:
        """Concrete backends for `device`: "auto" becomes triton/native (for `rope`: the attention's own RoPE);
        "triton" where it cannot run, or a RoPE the attention kernel cannot take, raises KernelUnavailableError."""
        device = torch.device(device)
        values = {}
        for field in FIELDS:
            backend = getattr(self, field)
            if backend == "auto" and field != "rope":
                backend = _auto_backend(device)
            elif backend == "triton":
                _require_triton(field, device)
            values[field] = backend
        if values["rope"] == "auto":
            values["rope"] = values["attention"]
        _check_rope(values["rope"], values["attention"])
        return KernelConfig(**values)

    def op(self, name: str) -> Callable:
        """The callable for op `name` under this config (see :func:`get_op`); for "attention" with a `rope` other
        than the attention's own, that RoPE then the attention backend's attention without RoPE."""
        _check_name("op", name, OPS)
        backend = getattr(self, OPS[name])
        if name != "attention" or self.rope in ("auto", backend):
            return get_op(name, backend)
        _check_rope(self.rope, backend)
        if backend != "auto":
            return _rope_then_attention(self.rope, backend)

        @functools.wraps(get_op(name, "torch"))
        def per_device(q: torch.Tensor, *args, **kwargs) -> torch.Tensor:
            # Whether the attention fuses RoPE depends on the device "auto" resolves to: decide per call.
            return self.resolve(q.device).op(name)(q, *args, **kwargs)

        return per_device


def _check_rope(rope: str, attention: str) -> None:
    """The rope field's one rule: Triton's attention kernel applies RoPE itself, so no other RoPE can go with it."""
    if attention == "triton" and rope not in ("auto", "triton"):
        raise KernelUnavailableError(
            f"kernel op 'rope': backend {rope!r} cannot run inside attention backend 'triton', whose kernel applies "
            f"RoPE itself; with it use rope 'auto' or 'triton', or pick attention 'native' or 'torch' to run RoPE "
            f"on its own"
        )


@functools.cache
def _rope_then_attention(rope: str, attention: str) -> Callable:
    """The attention op as RoPE by the `rope` backend, then the `attention` backend's (torch or native) attention
    without RoPE. With rope "torch" or "native" this computes what the attention backend does itself."""
    from kernels import _native, reference

    apply_rope = get_op("rope", rope)
    attend = (reference if attention == "torch" else _native).masked_attention

    def attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor | None = None,
                     window: int | None = None, offsets: torch.Tensor | None = None, base: float = 10000.0,
                     scale: float | None = None, dilation: int = 1) -> torch.Tensor:
        q, k = apply_rope(q, k, offsets, base)
        return attend(q, k, v, lengths, window, scale, dilation)

    attention_op.__name__ = f"attention_rope_{rope}_then_{attention}"
    attention_op.__doc__ = f"RoPE by the {rope!r} backend, then {attention!r} attention (padding/window/dilation)."
    return attention_op


def _require_triton(op: str, device: torch.device) -> None:
    ok, reason = triton_status(device)
    if not ok:
        raise KernelUnavailableError(
            f"kernel op {op!r}: backend 'triton' cannot run on device {str(device)!r}: {reason}; "
            f"use backend 'native' or 'torch' (or 'auto', which picks one)"
        )


def _first_tensor(args: tuple) -> torch.Tensor:
    return args[0]


@functools.cache
def _load_triton(op: str) -> Callable:
    module, name = _TRITON_ENTRIES[op]
    try:
        # sys.modules first: a traced (torch.compile) call cannot run an import, but it can read a loaded module.
        return getattr(sys.modules.get(module) or importlib.import_module(module), name)
    except ImportError as err:
        raise KernelUnavailableError(f"kernel op {op!r}: backend 'triton' could not be imported: {err}") from err


def _triton_op(op: str) -> Callable:
    """The Triton entry, imported now, wrapped to check on each eager call that the input's device can run it.

    This is the one check per call: the kernels themselves assume it was made (KernelConfig.resolve makes the same
    one when a model binds its ops, and traced calls skip it, since dynamo cannot trace it).
    """
    fn = _load_triton(op)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if not torch.compiler.is_compiling():
            _require_triton(op, _first_tensor(args).device)
        return fn(*args, **kwargs)

    return call


def _auto_op(op: str) -> Callable:
    """Dispatch on the first input's device: triton on CUDA >= 7.0, native elsewhere (with the ops' signature)."""
    native = get_op(op, "native")

    @functools.wraps(native)
    def call(*args, **kwargs):
        # _auto_backend has just made the device check, so the Triton entry is called directly, not re-checked.
        triton = _auto_backend(_first_tensor(args).device) == "triton"
        return (_load_triton(op) if triton else native)(*args, **kwargs)

    call.__name__ = call.__qualname__ = f"{op}_auto"
    call.__doc__ = f"{op}: Triton on CUDA with compute capability >= 7.0, torch's native path elsewhere."
    return call


@functools.cache
def get_op(op: str, backend: str) -> Callable:
    """The callable implementing `op` ("rmsnorm", "residual_rmsnorm", …) with `backend` ("auto", "torch", …)."""
    _check_name("op", op, OPS)
    _check_name("backend", backend, BACKENDS)
    if backend == "auto":
        return _auto_op(op)
    if backend == "triton":
        return _triton_op(op)
    from kernels import _native, reference

    if backend == "torch":
        return getattr(reference, "rope_attention" if op == "attention" else op)
    return getattr(_native, op)

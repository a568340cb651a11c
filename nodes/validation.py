"""Input checks at ``/prompt`` for every node of the pack, in one place.

ComfyUI checks ranges of numbers, but not the options of V3 combos on every version (0.3.64 does not), and
never NaN or infinity (a NaN passes every ``min``/``max`` comparison). ``install(cls)`` gives a node a
``validate_inputs`` that, for the inputs it names, checks what ComfyUI would and more:

* combo values against the options as they are now (file lists are re-read, so a file added since start-up is
  accepted and a missing one is refused with the list of files);
* numbers finite and within ``min`` / ``max``;
* output names (inputs called ``file_name``) as the trainers will use them, before any training starts.

Only combo, number and ``file_name`` inputs are named in the generated signature; ComfyUI keeps checking all
other inputs itself (a catch-all ``**kwargs`` signature would switch those checks off).
"""

from __future__ import annotations

import inspect
import math

from comfy_api.latest import io

from .common import VideoAdapterError, safe_name


def _checked_inputs(schema) -> list:
    out = []
    for inp in schema.inputs:
        if isinstance(inp, (io.Combo.Input, io.Float.Input, io.Int.Input)) or inp.id == "file_name":
            out.append(inp)
    return out


def check_value(inp, value) -> str | None:
    """An error message for ``value`` of input ``inp``, or None when it fits."""
    name = inp.id
    if isinstance(inp, io.Combo.Input):
        options = list(inp.options or [])
        if value not in options:
            shown = ", ".join(map(str, options[:12])) + (f" ... ({len(options)} in all)" if len(options) > 12 else "")
            return f"{name}: '{value}' is not one of the choices ({shown or 'none: the folder is empty'})"
        return None
    if isinstance(inp, (io.Float.Input, io.Int.Input)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{name}: {value!r} is not a number"
        if not math.isfinite(float(value)):
            return f"{name}: {value} is not a finite number"
        if inp.min is not None and value < inp.min:
            return f"{name}: {value} is below the minimum {inp.min}"
        if inp.max is not None and value > inp.max:
            return f"{name}: {value} is above the maximum {inp.max}"
        return None
    if name == "file_name":
        try:
            safe_name(str(value))
        except VideoAdapterError as e:
            return str(e)
    return None


def install(cls) -> None:
    """Give ``cls`` (an ``io.ComfyNode``) the checks above, unless it defines ``validate_inputs`` itself."""
    if "validate_inputs" in cls.__dict__:
        return
    names = [inp.id for inp in _checked_inputs(cls.define_schema())]
    if not names:
        return

    def validate_inputs(klass, **values):
        current = {inp.id: inp for inp in _checked_inputs(klass.define_schema())}  # fresh file lists
        for key, value in values.items():
            if key in current and value is not None:
                problem = check_value(current[key], value)
                if problem:
                    return problem
        return True

    params = [inspect.Parameter("cls", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None) for n in names]
    validate_inputs.__signature__ = inspect.Signature(params)
    cls.validate_inputs = classmethod(validate_inputs)

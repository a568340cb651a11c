"""Input checks for every node of the pack, in one place, one message per problem attached to its input.

ComfyUI reports a failed ``validate_inputs`` once for every input the function names, so the pack names as few
as it can. ``install(cls)`` gives a node:

* a ``validate_inputs`` at ``/prompt`` for the inputs ComfyUI does not check itself: output names (inputs called
  ``file_name``, checked as the trainers will use them, before any training starts) and, on hosts that do not
  check the options of V3 combos (0.3.x), the combos (file lists re-read, so a file added since start-up is
  accepted and a missing one is refused with the list of files);
* a check when the node runs, before its work: numbers finite (a NaN passes every ``min``/``max`` comparison,
  so ComfyUI's own range checks, which it attaches to each input, cannot catch it).

ComfyUI keeps checking every other input itself: types, ranges, and combos on newer hosts.
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


def host_checks_v3_combos() -> bool:
    """Whether this ComfyUI refuses a V3 combo value that is not among its options at /prompt (0.33 does)."""
    import execution

    try:
        return "Combo.io_type" in inspect.getsource(execution.validate_inputs)
    except (OSError, TypeError):
        return True


def _prompt_checked(inp, combos: bool) -> bool:
    return inp.id == "file_name" or (combos and isinstance(inp, io.Combo.Input))


def install(cls) -> None:
    """Give ``cls`` (an ``io.ComfyNode``) the checks above (a ``validate_inputs`` it defines itself is kept)."""
    import functools

    combos = not host_checks_v3_combos()
    schema = cls.define_schema()
    names = [inp.id for inp in _checked_inputs(schema) if _prompt_checked(inp, combos)]
    if names and "validate_inputs" not in cls.__dict__:
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

    numbers = [inp.id for inp in schema.inputs if isinstance(inp, (io.Float.Input, io.Int.Input))]
    original = cls.__dict__.get("execute")
    if not numbers or not isinstance(original, classmethod) or getattr(original.__func__, "_va_checked", False):
        return
    run = original.__func__

    @functools.wraps(run)
    def execute(klass, *args, **kwargs):
        for name in numbers:
            value = kwargs.get(name)
            if isinstance(value, float) and not math.isfinite(value):
                raise VideoAdapterError(f"{name}: {value} is not a finite number; give a number in the input's range")
        return run(klass, *args, **kwargs)

    execute._va_checked = True
    cls.execute = classmethod(execute)

"""Command-line flags derived from the config dataclasses, for the entry points.

Every field of ``RunConfig``'s sections is a flag: its name is the field's (or the ``flag`` given
in ``hofam_tf.config.option``, e.g. ``--precision`` for ``model.dtype``), its default and help
are the field's, choices become an enum and tuples are comma-separated integers (a field that
``RunConfig`` derives from another, such as ``model.reference``, has none). A new config
field is therefore a new flag with nothing else to write. ``--image_size`` sets the model's
height and width at once.

Only the flags given on the command line change a configuration (``config_from_flags``), so a
``--config=run.json`` file or a section built elsewhere keeps its values unless a flag says
otherwise.
"""
from __future__ import annotations

import dataclasses
import sys
import typing

from absl import flags

from hofam_tf.config import RunConfig
from hofam_tf.errors import HOFAMInputError

IMAGE_SIZE_FLAG = "image_size"


def sections(names=None) -> dict:
    """section name -> config dataclass, in RunConfig's order (``names``: a subset)."""
    hints = typing.get_type_hints(RunConfig)
    out = {f.name: hints[f.name] for f in dataclasses.fields(RunConfig)}
    return out if names is None else {n: out[n] for n in names}


def fields(names=None):
    """(section, dataclass field, flag name, field type) for every config field of ``names``."""
    for section, cls in sections(names).items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.metadata.get("derived"):
                continue  # set by RunConfig from another field, never on its own
            yield section, f, f.metadata.get("flag") or f.name, hints[f.name]


def define_config_flags(names=None, flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines one flag per field of the sections ``names`` (default: all), as flags of the
    calling module (so its ``--help`` lists them)."""
    caller = sys._getframe(1).f_globals.get("__name__", "")
    module = sys.argv[0] if caller == "__main__" else caller
    kw = {"flag_values": flag_values, "module_name": module}
    for _, f, name, typ in fields(names):
        helptext, choices = f.metadata["help"], f.metadata.get("choices")
        if choices:
            flags.DEFINE_enum(name, f.default, list(choices), helptext, **kw)
        elif typ is bool:
            flags.DEFINE_bool(name, f.default, helptext, **kw)
        elif typ is int:
            flags.DEFINE_integer(name, f.default, helptext, **kw)
        elif typ is float:
            flags.DEFINE_float(name, f.default, helptext, **kw)
        elif typ is str:
            flags.DEFINE_string(name, f.default, helptext, **kw)
        else:  # tuple[int, ...]
            flags.DEFINE_string(name, ",".join(str(v) for v in f.default), helptext + " Comma-separated.",
                                **kw)
    if names is None or "model" in names:
        flags.DEFINE_integer(IMAGE_SIZE_FLAG, None, "Model input height and width (sets --height and --width).",
                             **kw)


def _value(flag: str, value, typ):
    if typ in (bool, int, float, str):
        return value
    try:
        return tuple(int(v) for v in str(value).split(",") if v.strip())
    except ValueError:
        raise HOFAMInputError(f"--{flag}: expected comma-separated integers, got {value!r}") from None


def given(section: str, flag_values: flags.FlagValues = flags.FLAGS) -> frozenset:
    """Names of the fields of ``section`` whose flag was given on the command line."""
    return frozenset(f.name for s, f, name, _ in fields((section,)) if flag_values[name].present)


def config_from_flags(base: RunConfig | None = None, names=None,
                      flag_values: flags.FlagValues = flags.FLAGS) -> RunConfig:
    """``base`` (default: the defaults) with every config flag given on the command line applied."""
    data = (base or RunConfig()).to_dict()
    for section, f, name, typ in fields(names):
        if flag_values[name].present:
            data[section][f.name] = _value(name, flag_values[name].value, typ)
    if (names is None or "model" in names) and flag_values[IMAGE_SIZE_FLAG].present:
        data["model"]["height"] = data["model"]["width"] = flag_values[IMAGE_SIZE_FLAG].value
    return RunConfig.from_dict(data)

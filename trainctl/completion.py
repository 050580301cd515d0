"""Shell completion of config overrides (conf=, group=, section.key=) from conf/ YAML and the schema
dataclasses' source, without importing torch or Hydra: it runs on every <TAB>."""

from __future__ import annotations

import ast
import dataclasses
import enum
import functools
from collections.abc import Sequence
from pathlib import Path

import yaml

PACKAGE = Path(__file__).resolve().parent
GROUP_ALIASES = {"conf": "preset"}
SECTION_OF_GROUP = {"dataset": "data"}
FIXED = ("trainer", "run")


def conf_dir() -> Path:
    from trainctl.config.compose import conf_dir as configured  # light: no Hydra at import

    return configured()


def groups() -> list[str]:
    return sorted(p.name for p in conf_dir().iterdir() if p.is_dir())


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir() / GROUP_ALIASES.get(group, group)).glob("*.yaml"))


def registry_sections() -> dict[str, str]:
    from trainctl.config.validate import REGISTRY_SECTIONS

    return {section: target.split(":")[1] for section, target in REGISTRY_SECTIONS.items()}


@functools.lru_cache(maxsize=1)
def source_schemas() -> tuple[dict[str, dict[str, str]], dict[str, tuple[list[str], list[str]]]]:
    """From the package's source: {registry variable: {option name: schema class}} and
    {class: (base classes, own field names)}, read with `ast` so no component module is imported."""
    registered: dict[str, dict[str, str]] = {}
    classes: dict[str, tuple[list[str], list[str]]] = {}
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if "class " not in text and ".register(" not in text:
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                bases = [b.id for b in node.bases if isinstance(b, ast.Name)]
                fields = [
                    s.target.id
                    for s in node.body
                    if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
                ]
                classes.setdefault(node.name, (bases, fields))
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "register"
                and isinstance(node.func.value, ast.Name)
                and len(node.args) >= 2
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[1], ast.Name)
            ):
                registered.setdefault(node.func.value.id, {})[str(node.args[0].value)] = node.args[1].id
    return registered, classes


def class_fields(name: str) -> list[str]:
    """Field names of a schema class found in the source, base classes' fields first."""
    _, classes = source_schemas()
    bases, own = classes.get(name, ([], []))
    inherited = [f for base in bases for f in class_fields(base)]
    return list(dict.fromkeys([*inherited, *own]))


def chosen_options(words: Sequence[str]) -> dict[str, str]:
    """Group -> option for the command line so far: its group=option words over the preset's defaults
    over conf/config.yaml's."""
    picked = dict(word.split("=", 1) for word in words if "=" in word and "." not in word.split("=", 1)[0])
    choices: dict[str, str] = {}
    base = yaml.safe_load((conf_dir() / "config.yaml").read_text()) or {}
    for entry in base.get("defaults", []):
        if isinstance(entry, dict):
            choices.update({str(k): str(v) for k, v in entry.items()})
    preset = picked.get("conf") or picked.get("preset") or choices.get("preset")
    preset_file = conf_dir() / "preset" / f"{preset}.yaml"
    if preset_file.is_file():
        for entry in (yaml.safe_load(preset_file.read_text()) or {}).get("defaults", []):
            if isinstance(entry, dict):
                for key, value in entry.items():
                    choices[str(key).replace("override", "").strip().strip("/")] = str(value)
    choices.update({GROUP_ALIASES.get(k, k): v for k, v in picked.items()})
    return choices


def section_fields(section: str, words: Sequence[str]) -> list[tuple[str, type | None]]:
    """(field, type or None) of a config section as the command line so far would configure it."""
    from trainctl.config import schema

    if section in FIXED:
        cls = {"trainer": schema.TrainerConfig, "run": schema.RunConfig}[section]
        return [(f.name, f.type if not isinstance(f.type, str) else None) for f in dataclasses.fields(cls)]
    group = next((g for g, s in SECTION_OF_GROUP.items() if s == section), section)
    option = chosen_options(words).get(group)
    if option is None:
        return []
    option_file = conf_dir() / group / f"{option}.yaml"
    name = (
        (yaml.safe_load(option_file.read_text()) or {}).get("name", option)
        if option_file.is_file()
        else option
    )
    registered, _ = source_schemas()
    schema_class = registered.get(registry_sections().get(section, ""), {}).get(str(name))
    return [(f, None) for f in class_fields(schema_class)] if schema_class else []


def nested_fields(section: str, words: Sequence[str]) -> list[str]:
    """Every settable key under a section, nested dataclasses flattened (trainer.early_stopping.patience)."""
    from trainctl.config import schema

    keys = []
    hints = {"trainer": schema.TrainerConfig, "run": schema.RunConfig}
    for name, _ in section_fields(section, words):
        if section in hints:
            import typing

            kind = typing.get_type_hints(hints[section]).get(name)
            if dataclasses.is_dataclass(kind):
                keys += [f"{section}.{name}.{f.name}" for f in dataclasses.fields(kind)]
                continue
        keys.append(f"{section}.{name}")
    return keys


def value_choices(key: str, words: Sequence[str]) -> list[str]:
    """Values worth offering for `key`: a group's options, an enum's members, true/false."""
    from trainctl.config import schema

    group = GROUP_ALIASES.get(key, key)
    if "." not in key and group in groups():
        return options(group)
    if key == "logger":
        return [member.value for member in schema.Logger]
    section, _, rest = key.partition(".")
    if section in ("trainer", "run"):
        import typing

        cls: object = {"trainer": schema.TrainerConfig, "run": schema.RunConfig}[section]
        kind: object = None
        for part in rest.split("."):
            kind = typing.get_type_hints(cls).get(part) if dataclasses.is_dataclass(cls) else None
            cls = kind
        args = typing.get_args(kind) or (kind,)
        for arg in args:
            if isinstance(arg, type) and issubclass(arg, enum.Enum):
                return [member.value for member in arg]
            if arg is bool:
                return ["true", "false"]
    return []


def key_choices(prefix: str, words: Sequence[str]) -> list[str]:
    """Top level: `group=` and `section.`; inside a section: its `section.key=` entries."""
    if "." not in prefix:
        tops = ["conf=" if g == "preset" else f"{g}=" for g in groups()]
        tops += [
            f"{s}." for s in ["model", "data", "optim", "trainer", "parallel", "compress", "launcher", "run"]
        ]
        tops.append("logger=")
        return sorted(t for t in tops if t.startswith(prefix))
    section = prefix.split(".", 1)[0]
    section = SECTION_OF_GROUP.get(section, section)
    shown = prefix.split(".", 1)[0]
    keys = [f"{shown}{k[len(section) :]}=" for k in nested_fields(section, words) if k != f"{section}.name"]
    return [k for k in keys if k.startswith(prefix)]


def complete_overrides(words: Sequence[str], incomplete: str) -> list[str]:
    """Completions for the word being typed, whole `key=value` words (the bash script trims what
    readline keeps); `words` are the overrides typed before it, which pick the options."""
    try:
        if "=" in incomplete:
            key, _, prefix = incomplete.partition("=")
            return [f"{key}={v}" for v in value_choices(key, words) if v.startswith(prefix)]
        return key_choices(incomplete, words)
    except (OSError, yaml.YAMLError, SyntaxError):  # never break the user's shell over a bad file
        return []


BASH_SCRIPT = r"""
%(complete_func)s() {
    local IFS=$'\n' words=() i
    # Bash splits `key=value` at '=' (COMP_WORDBREAKS): join the pieces back into one word.
    for ((i = 0; i <= COMP_CWORD; i++)); do
        if ((i > 0)) && [[ ${COMP_WORDS[i]} == "=" || ${COMP_WORDS[i-1]} == "=" ]]; then
            words[-1]+="${COMP_WORDS[i]}"
        else
            words+=("${COMP_WORDS[i]}")
        fi
    done
    local cur="${words[-1]}"
    COMPREPLY=( $( env COMP_WORDS="${words[*]}" \
                   COMP_CWORD=$((${#words[@]} - 1)) \
                   %(autocomplete_var)s=complete_bash $1 ) )
    if [[ $cur == *=* && ${COMP_WORDS[COMP_CWORD]} != "$cur" ]]; then
        COMPREPLY=( "${COMPREPLY[@]#"${cur%%=*}="}" )  # readline replaces only what follows '='
    fi
    if [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == *[=.] ]]; then
        compopt -o nospace 2>/dev/null  # `optim=` and `model.` continue the same word
    fi
    return 0
}

complete -o default -F %(complete_func)s %(prog_name)s
"""


def install_bash_script() -> None:
    """Typer's bash script made to work with `key=value` words: bash splits them at '=', the script
    joins them back and trims what readline keeps, and adds no space after `key=` or `section.`.
    (Typer keeps its scripts in private names; if they move, Typer's own script is used.)"""
    from typer import _completion_classes, _completion_shared

    scripts = getattr(_completion_shared, "_completion_scripts", None)
    if isinstance(scripts, dict) and "bash" in scripts:
        scripts["bash"] = BASH_SCRIPT
    if hasattr(_completion_classes, "BashComplete"):
        _completion_classes.BashComplete.source_template = BASH_SCRIPT

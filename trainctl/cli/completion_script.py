"""The bash completion script that `--install-completion` writes, fitted to `key=value` words."""

from __future__ import annotations

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

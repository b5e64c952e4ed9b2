"""The ``smd`` manual page and its bash and zsh completions, generated from the parser.

Rules
-----
- Nothing here is written by hand: commands, options, their help, choices
  and the examples all come from :func:`smdbus.cli.build_parser` (every
  subcommand configured), so the manual cannot drift from ``--help``.
  ``make man`` writes the three files into ``src/smdbus/data/`` (shipped as
  package data); a test regenerates them and compares.
- The output depends on nothing but the parser and the package version
  (no date, no terminal width, no environment), so regenerating is a no-op
  when nothing changed. ``SMD_LOOP`` sets ``--loop``'s default, which
  ``--help`` shows; the manual shows the default as shipped, whatever the
  environment of whoever builds it or runs the tests.

Usage: ``python -m smdbus._clidoc man|bash|zsh`` prints one of them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from smdbus.cli import COMMANDS, _version, build_parser

COMMON_FLAGS = {"-h", "-v"}
"""Options every subcommand has: the manual says them once, at the top."""

LOOP_ENV = "SMD_LOOP"
"""smdbus.commands._loop.ENV: the one variable a parser takes a default from."""

FILE_METAVARS = ("FILE", "DEVICE", "CHIP")
"""Options whose value is a path: the shells complete file names for them."""


@dataclass(frozen=True)
class Option:
    """One option or positional argument, as the three outputs need it."""

    flags: tuple[str, ...]  # empty for a positional
    metavar: str | None  # None: takes no value
    help: str
    choices: tuple[str, ...]
    repeatable: bool
    optional_positional: bool = False

    @property
    def is_file(self) -> bool:
        return self.metavar in FILE_METAVARS


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    options: tuple[Option, ...]
    examples: tuple[str, ...]


def _metavar(action: argparse.Action) -> str | None:
    if action.nargs == 0:
        return None
    if action.choices is not None and action.metavar is None:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    if isinstance(action.metavar, str):
        return action.metavar
    return action.dest.upper() if action.option_strings else action.dest


def _options(parser: argparse.ArgumentParser) -> tuple[Option, ...]:
    out = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        out.append(
            Option(
                flags=tuple(action.option_strings),
                metavar=_metavar(action),
                help=action.help or "",
                choices=tuple(str(c) for c in action.choices or ()),
                repeatable=isinstance(action, (argparse._AppendAction, argparse._CountAction)),
                optional_positional=not action.option_strings and action.nargs == "?",
            )
        )
    return tuple(out)


def _examples(parser: argparse.ArgumentParser) -> tuple[str, ...]:
    lines = (parser.epilog or "").splitlines()
    return tuple(line[2:] if line.startswith("  ") else line for line in lines[1:])


def model() -> tuple[Command, list[Command]]:
    """The top level (as a command named ``smd``) and every subcommand, in table order."""
    saved = os.environ.pop(LOOP_ENV, None)
    try:
        parser = build_parser(every=True)
    finally:
        if saved is not None:
            os.environ[LOOP_ENV] = saved
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands = [
        Command(name, COMMANDS[name][1], _options(p), _examples(p))
        for name, p in sub.choices.items()
    ]
    top = Command("smd", parser.description or "", _options(parser), _examples(parser))
    return top, commands


# -- the manual page (man(7) macros) -------------------------------------------------------


def _roff(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in (".", "'") else text


def _synopsis(cmd: Command) -> str:
    parts = []
    for o in cmd.options:
        if o.flags:
            flag = f"\\fB{_roff(o.flags[0])}\\fR"
            parts.append(
                f"[{flag}]" if o.metavar is None else f"[{flag} \\fI{_roff(o.metavar)}\\fR]"
            )
        else:
            meta = f"\\fI{_roff(o.metavar or '')}\\fR"
            parts.append(f"[{meta}]" if o.optional_positional else meta)
    return " ".join(parts)


def _option_items(cmd: Command, *, common: bool = True) -> Iterator[str]:
    for o in cmd.options:
        if not common and set(o.flags) & COMMON_FLAGS:
            continue  # said once, under OPTIONS
        yield ".TP"
        if o.flags:
            shown = ", ".join(f"\\fB{_roff(f)}\\fR" for f in o.flags)
            if o.metavar is not None:
                shown += f" \\fI{_roff(o.metavar)}\\fR"
        else:
            shown = f"\\fI{_roff(o.metavar or '')}\\fR"
        yield shown
        yield _roff(o.help)


def _example_block(cmd: Command) -> Iterator[str]:
    if cmd.examples:
        yield ".PP"
        yield "Examples:"
        yield ".PP"
        yield ".RS 4"
        yield ".nf"
        yield from (_roff(line) for line in cmd.examples)
        yield ".fi"
        yield ".RE"


def man_page() -> str:
    top, commands = model()
    version = _version()
    lines = [
        '.\\" Generated by `make man` (python -m smdbus._clidoc man) from the smd parser.',
        '.\\" Do not edit: change the parser and regenerate.',
        f'.TH SMD 1 "" "smdbus {_roff(version)}" "User Commands"',
        ".SH NAME",
        "smd \\- " + _roff(top.summary),
        ".SH SYNOPSIS",
        f".B smd\n{_synopsis(top)} \\fICOMMAND\\fR [\\fIOPTIONS\\fR]",
        ".SH DESCRIPTION",
        _roff(
            "smd runs and talks to smdbus: the device daemon, a bare proxy for the "
            "cross-process bus, and the tools to watch and drive the bus from a shell. "
            "C programs built on libwebsockets join the same bus with -i +@proxy.ss.lws."
        ),
        ".SH OPTIONS",
        _roff("-h and -v also work after the command (smd monitor -v)."),
        *_option_items(top),
        ".SH COMMANDS",
    ]
    for cmd in commands:
        lines += [
            f'.SS "smd {cmd.name}"',
            _roff(cmd.summary) + ".",
            ".PP",
            f".B smd {cmd.name}\n{_synopsis(cmd)}",
            *_option_items(cmd, common=False),
            *_example_block(cmd),
        ]
    lines += [
        ".SH EXAMPLES",
        ".nf",
        *(_roff(line) for line in top.examples),
        ".fi",
        ".SH EXIT STATUS",
        _roff(
            "0 done; 1 failed (no proxy, the proxy hung up, a timeout); 2 bad arguments, "
            "config or policy; 130 interrupted (Ctrl-C). smd cpd: 3 captive portal, "
            "4 no internet."
        ),
        ".SH ENVIRONMENT",
        ".TP",
        ".B NO_COLOR",
        _roff("when set and not empty, no colours (smd monitor, smd daemon --live)."),
        ".TP",
        ".B JOURNAL_STREAM",
        _roff(
            "set by systemd; when it names stderr, log lines carry <N> priority prefixes "
            "for the journal and no timestamp."
        ),
        ".SH FILES",
        ".TP",
        ".I /etc/smd/daemon.toml",
        _roff("the daemon's configuration (smd daemon --print-config shows every key)."),
        ".SH SEE ALSO",
        _roff("systemd.service(5), sd_notify(3); the user guide in the smdbus documentation."),
    ]
    return "\n".join(lines) + "\n"


# -- bash ------------------------------------------------------------------------------


def _words(options: tuple[Option, ...]) -> str:
    return " ".join(f for o in options for f in o.flags)


def _value_cases(prefix: str, cmd: Command) -> Iterator[str]:
    for o in cmd.options:
        if not o.flags or o.metavar is None:
            continue
        pattern = "|".join(f"{prefix}{f}" for f in o.flags)
        if o.choices:
            words = " ".join(o.choices)
            yield f'        {pattern}) COMPREPLY=($(compgen -W "{words}" -- "$cur")); return ;;'
        elif o.is_file:
            yield f'        {pattern}) COMPREPLY=($(compgen -f -- "$cur")); return ;;'
        else:
            yield f"        {pattern}) return ;;"


def bash_completion() -> str:
    top, commands = model()
    names = " ".join(c.name for c in commands)
    lines = [
        "# bash completion for smd. Generated by `make man` (python -m smdbus._clidoc bash)",
        "# from the smd parser: do not edit.",
        "_smd() {",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
        '    local cmd="" i opts',
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        case "${COMP_WORDS[i]}" in',
        "            -*) ;;",
        '            *) cmd="${COMP_WORDS[i]}"; break ;;',
        "        esac",
        "    done",
        '    case "$cmd:$prev" in',
    ]
    for cmd in commands:
        lines += _value_cases(f"{cmd.name}:", cmd)
    lines += [
        "    esac",
        '    case "$cmd" in',
        f'        "") opts="{_words(top.options)} {names}" ;;',
    ]
    for cmd in commands:
        lines.append(f'        {cmd.name}) opts="{_words(cmd.options)}" ;;')
    lines += [
        "        *) return ;;",
        "    esac",
        '    COMPREPLY=($(compgen -W "$opts" -- "$cur"))',
        "}",
        "complete -o default -F _smd smd",
    ]
    return "\n".join(lines) + "\n"


# -- zsh -------------------------------------------------------------------------------


def _zq(text: str) -> str:
    """Quoted for a single-quoted _arguments spec: brackets and colons escaped."""
    for a, b in (("\\", "\\\\"), ("[", "\\["), ("]", "\\]"), (":", "\\:")):
        text = text.replace(a, b)
    return text.replace("'", "'\\''")


def _zsh_action(o: Option) -> str:
    if o.choices:
        return "(" + " ".join(o.choices) + ")"
    return "_files" if o.is_file else " "


def _zsh_specs(cmd: Command) -> Iterator[str]:
    for o in cmd.options:
        value = "" if o.metavar is None else f":{_zq(o.metavar)}:{_zsh_action(o)}"
        if not o.flags:
            colon = "::" if o.optional_positional else ":"
            yield f"'{colon}{_zq(o.metavar or '')}:{_zsh_action(o)}'"
            continue
        star = "*" if o.repeatable else ""
        excl = f"({' '.join(o.flags)})" if len(o.flags) > 1 and not star else ""
        flags = o.flags[0] if len(o.flags) == 1 else "{" + ",".join(o.flags) + "}"
        spec_tail = f"[{_zq(o.help)}]{value}"
        if len(o.flags) == 1:
            yield f"'{excl}{star}{flags}{spec_tail}'"
        else:
            yield f"'{excl}{star}'{flags}'{spec_tail}'"


def zsh_completion() -> str:
    top, commands = model()
    lines = [
        "#compdef smd",
        "# zsh completion for smd. Generated by `make man` (python -m smdbus._clidoc zsh)",
        "# from the smd parser: do not edit.",
        "_smd() {",
        "    local curcontext=$curcontext state line",
        "    local -a commands",
        "    commands=(",
        *(f"        '{c.name}:{_zq(c.summary)}'" for c in commands),
        "    )",
        "    _arguments -C \\",
        *(f"        {spec} \\" for spec in _zsh_specs(top)),
        "        '1:command:->command' \\",
        "        '*::argument:->argument'",
        "    case $state in",
        "        command) _describe -t commands 'smd command' commands ;;",
        "        argument)",
        "            case $line[1] in",
    ]
    for cmd in commands:
        lines.append(f"                {cmd.name})")
        lines.append("                    _arguments \\")
        specs = list(_zsh_specs(cmd))
        lines += [f"                        {s} \\" for s in specs[:-1]]
        lines.append(f"                        {specs[-1]} ;;")
    lines += [
        "            esac ;;",
        "    esac",
        "}",
        '_smd "$@"',
    ]
    return "\n".join(lines) + "\n"


OUTPUTS = {"man": man_page, "bash": bash_completion, "zsh": zsh_completion}
FILES = {"man": "man/man1/smd.1", "bash": "completion/smd.bash", "zsh": "completion/_smd"}
"""Where ``make man`` puts each output, under ``src/smdbus/data/``."""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in OUTPUTS:
        print(f"usage: python -m smdbus._clidoc {'|'.join(OUTPUTS)}", file=sys.stderr)
        return 2
    sys.stdout.write(OUTPUTS[args[0]]())
    return 0


if __name__ == "__main__":
    sys.exit(main())

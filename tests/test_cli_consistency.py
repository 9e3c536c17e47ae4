"""Every subcommand's parser, walked: one name for one concept across commands, no command listing an option it
cannot use, and help that states the default that is really used. Data-driven: a command or option added later
is checked by the same rules."""

from __future__ import annotations

import re

import pytest

from resizelab.cli import COMMANDS, build_parser

# Spellings of one concept; the first is the name every command uses (the others may stay as aliases).
SYNONYMS = (
    ("--report-dir", "--out", "--out-dir", "--output", "--output-dir", "--report-folder"),
    ("--limit-test", "--limit", "--test-limit", "--n-test"),
    ("--limit-train", "--train-limit"),
    ("--size", "--sizes"),
    ("--seeds", "--n-seeds", "--num-seeds"),
    ("--db", "--database", "--store"),
)
# Run options that only a command storing runs can use: weights kept beside the store, serving results stored with the run.
STORED_RUN_OPTIONS = ("opt_save_weights", "opt_serve")


def parsers():
    for name in COMMANDS:
        commands: dict = {}
        build_parser(commands, only=name)
        yield name, commands[name]


def flag_actions(parser):
    return [a for a in parser._actions if a.option_strings and a.dest != "help"]


def long_flags(action) -> list[str]:
    return [s for s in action.option_strings if s.startswith("--")]


def field_of(dest: str) -> str:
    """A generated flag's config field: `opt_<field>` for run options, `<Config>.<field>` for another config's."""
    return dest.removeprefix("opt_").rsplit(".", 1)[-1]


ALL = list(parsers())


def test_every_command_is_walked():
    assert {name for name, _ in ALL} == set(COMMANDS) and len(ALL) >= 11


def test_one_concept_has_one_name_across_commands():
    wrong = []
    for name, parser in ALL:
        for action in flag_actions(parser):
            flags = long_flags(action)
            if not flags:
                continue
            for group in SYNONYMS:
                if flags[0] in group[1:]:
                    wrong.append(f"{name} {flags[0]}: the other commands call it {group[0]}")
    assert not wrong, "\n".join(wrong)


def test_one_option_field_has_one_flag_across_commands():
    """A config field (the same option of RunConfig, or a field of the same name in another config) is spelled
    the same in every command: serve's test sizes as run's, bench's sizes as spectrum's."""
    flags_of: dict[str, set[tuple[str, str]]] = {}
    for name, parser in ALL:
        for action in flag_actions(parser):
            flags = long_flags(action)
            if flags and (action.dest.startswith("opt_") or "." in action.dest):
                flags_of.setdefault(field_of(action.dest), set()).add((flags[0], name))
    wrong = {field: sorted(found) for field, found in flags_of.items() if len({flag for flag, _ in found}) > 1}
    assert not wrong, wrong


def test_no_command_lists_an_option_it_cannot_use():
    wrong = []
    for name, parser in ALL:
        dests = {a.dest for a in flag_actions(parser)}
        stores = any("--db" in a.option_strings for a in flag_actions(parser))
        for dest in STORED_RUN_OPTIONS:
            if dest in dests and not stores:
                wrong.append(f"{name} lists --{field_of(dest).replace('_', '-')}, but stores no run")
    assert not wrong, "\n".join(wrong)
    commands = dict(ALL)
    assert not {"--serve", "--save-weights"} & {f for a in flag_actions(commands["bench"]) for f in a.option_strings}


def test_help_states_the_default_that_is_used():
    wrong = []
    for name, parser in ALL:
        for action in flag_actions(parser):
            text = action.help or ""
            said = re.findall(r"(?<![-\w])default\b", text)  # not a name such as pil-default
            if len(said) > 1:
                wrong.append(f"{name} {action.option_strings[0]}: two defaults in one help: {text!r}")
            if "(default none)" in text:
                # "none" is a default only where none is a value one could type (--weights none); else say what is used.
                typed = "none" in text.replace("(default none)", "") or "none" in str(action.metavar) or \
                    (action.choices is not None and "none" in action.choices)
                if not typed:
                    wrong.append(f"{name} {action.option_strings[0]}: says '(default none)': {text!r}")
    assert not wrong, "\n".join(wrong)


def test_study_help_says_the_preset_values_win():
    commands = dict(ALL)
    text = " ".join(commands["study"].format_help().split())
    assert "a preset sets its own values" in text and "win over the defaults shown" in text


@pytest.mark.parametrize("command,old,new", [("probe", "--limit", "--limit-test"), ("spectrum", "--out", "--report-dir"),
                                             ("report", "--out", "--report-dir"), ("bench", "--sizes", "--size"),
                                             ("serve", "--test-size", "--test-sizes")])
def test_old_spellings_still_parse_as_the_new_name(command, old, new):
    commands: dict = {}
    build_parser(commands, only=command)
    parser = commands[command]
    required = ["--run", "abcd"] if command == "serve" else []
    value = "16" if "size" in new else "7" if "limit" in new else "somewhere"
    assert vars(parser.parse_args([*required, old, value])) == vars(parser.parse_args([*required, new, value]))


def test_every_option_that_takes_a_value_says_what_is_used_when_it_is_left_out():
    """A flag whose help never says its default leaves the user guessing (advise's search axes once did)."""
    import argparse

    bare = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._StoreConstAction, argparse._CountAction,
            argparse._VersionAction)
    wrong = [f"{name} {action.option_strings[0]}: {action.help!r}" for name, parser in ALL for action in flag_actions(parser)
             if not isinstance(action, bare) and not re.search(r"(?<![-\w])default\b", action.help or "")]
    assert not wrong, "\n".join(wrong)


def test_a_single_valued_option_has_one_default_across_commands():
    """The same option (one value, not a list to compare) defaults alike in every command that takes it; probe's
    --backend once defaulted to pil where run, sweep, study and bench used tensor. The differences kept are chosen:
    bench measures speed and needs no download (--weights none, --data synthetic); probe compares a resize with the native images, so
    it must resize (--size 16); each command's report folder is named after it (reports/probe)."""
    chosen = {("bench", "weights"), ("bench", "data"), ("probe", "size"), ("probe", "out"), ("spectrum", "out")}
    said: dict[str, dict[str, str]] = {}
    for name, parser in ALL:
        for action in flag_actions(parser):
            if (action.dest.startswith("opt_") or "." in action.dest) and "..." not in str(action.metavar):
                found = re.search(r"\(default ([^)]*)\)", " ".join((action.help or "").split()))
                if found and (name, field_of(action.dest)) not in chosen:
                    said.setdefault(field_of(action.dest), {})[name] = found.group(1)
    wrong = {field: by for field, by in said.items() if len(set(by.values())) > 1}
    assert not wrong, wrong
    assert said["backend"]["probe"] == said["backend"]["run"] == "tensor"

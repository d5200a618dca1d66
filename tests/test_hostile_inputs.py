"""Hostile inputs (issue 32): each is one ``Error:`` line naming the file (and line) or the bad
value, with status 1: never a traceback, an allocator failure or a crashed process.

The catalogue is ``scripts/probe_hostile_inputs.py``: it runs every case through the real
``zs2020`` script and prints a table. Here each case runs in-process on the session's tiny
corpus and run, one test per case; the tests below it cover what no command line can carry.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.core.config import load_config
from pipeline.core.errors import UserError
from pipeline.core.io import read_text_lines
from pipeline.core.overrides import MAX_CONFIG_BYTES, MAX_YAML_DEPTH, parse_yaml
from tests.test_bad_inputs import assert_refused, invoke


def _load_probe():
    path = Path(__file__).resolve().parents[1] / "scripts" / "probe_hostile_inputs.py"
    spec = importlib.util.spec_from_file_location("probe_hostile_inputs", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


probe = _load_probe()


@pytest.fixture(scope="module")
def workspace(tiny_corpus, tiny_run, tmp_path_factory):
    def zs2020(args: list) -> None:
        result = invoke(*args)
        assert result.exit_code == 0, result.output
    return probe.Workspace(tiny_corpus, tiny_run, tmp_path_factory.mktemp("hostile"), zs2020)


@pytest.mark.parametrize("name", list(probe.CASES))
def test_hostile_input_is_one_error_line(name, workspace, tmp_path):
    case = probe.CASES[name](workspace, tmp_path)
    result = CliRunner().invoke(main, [str(a) for a in case.args], env=case.env)
    assert_refused(result, *case.expect, alone=case.alone)


# ============================================================================ beyond the command line
def test_override_longer_than_a_config_is_refused_naming_the_key():
    """The kernel caps one argument at 128 KB, so only the Python API can pass this one."""
    with pytest.raises(UserError, match=r"override seed: a value of \d+ characters"):
        load_config("tiny", ["seed=" + "1" * (MAX_CONFIG_BYTES + 1)])


def test_text_that_is_not_yaml_stays_text_but_yaml_past_the_bounds_is_refused():
    assert load_config("tiny", ["submission.author=[Ada"]).submission.author == "[Ada"       # malformed: text
    with pytest.raises(UserError, match="override submission.author: YAML aliases are not allowed"):
        load_config("tiny", ["submission.author=[&a x, *a]"])
    parse_yaml("[" * MAX_YAML_DEPTH + "]" * MAX_YAML_DEPTH)
    with pytest.raises(yaml.YAMLError, match=f"nested too deeply: more than {MAX_YAML_DEPTH} levels"):
        parse_yaml("[" * (MAX_YAML_DEPTH + 1) + "]" * (MAX_YAML_DEPTH + 1))


def test_generator_width_is_bounded_across_keys():
    """Each upsampling halves the channels from ngf x 2 ** len(ratios): the product is the size."""
    assert load_config("tiny", ["melgan.generator.ngf=512"]).melgan.generator.ngf == 512      # 4 ratios: 8192
    with pytest.raises(UserError, match=r"melgan.generator.ngf: got 1024; expected ngf x 2 \*\* len\(ratios\)"):
        load_config("tiny", ["melgan.generator.ngf=1024"])


def test_text_lines_are_numbered_as_an_editor_numbers_them(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes(b"a\r\nb\x0cc\n\nd\xe9\n")
    with pytest.raises(UserError, match=rf"{path}:4: not UTF-8 text \(byte 0xe9\); save the list as UTF-8"):
        read_text_lines(path, "list")
    path.write_bytes(b"a\r\nb\x0cc\n\nd\n")
    assert read_text_lines(path, "list") == ["a", "b\x0cc", "", "d"]
    with pytest.raises(UserError, match="cannot read this list"):
        read_text_lines(tmp_path, "list")

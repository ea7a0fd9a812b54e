"""stream_sep.cli_runner: option values that start with a dash."""

from __future__ import annotations

import pytest

from stream_sep.cli_runner import OneLineParser, attach_dash_values
from stream_sep.errors import UserError


def test_a_listed_option_takes_the_next_word_even_with_a_dash():
    options = ("--shift", "--extra")
    assert attach_dash_values(["--shift", "-7,2", "--n", "3"], options) == [
        "--shift=-7,2",
        "--n",
        "3",
    ]
    assert attach_dash_values(["--extra", "--seed 3", "--shift=-1"], options) == [
        "--extra=--seed 3",
        "--shift=-1",
    ]
    assert attach_dash_values(["--n", "-7", "--shift"], options) == ["--n", "-7", "--shift"]
    assert attach_dash_values(["--", "--shift", "-1"], options) == ["--", "--shift", "-1"]


def test_the_parser_accepts_both_forms_and_refuses_in_one_line():
    parser = OneLineParser(prog="demo", dash_values=("--shift",))
    parser.add_argument("--shift")
    parser.add_argument("--n", type=int)
    assert parser.parse_args(["--shift", "-7,2,0.5"]).shift == "-7,2,0.5"
    assert parser.parse_args(["--shift=-7,2,0.5", "--n", "2"]).n == 2
    with pytest.raises(UserError, match="argument --shift: expected one argument"):
        parser.parse_args(["--shift"])
    plain = OneLineParser(prog="demo")
    plain.add_argument("--shift")
    with pytest.raises(UserError, match="argument --shift: expected one argument"):
        plain.parse_args(["--shift", "-7,2,0.5"])  # what the option is for

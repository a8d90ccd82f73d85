"""Every ``--option`` of ``tmq`` can come from ``TMQ_<OPTION>``; the command line wins."""

from __future__ import annotations

import pytest

from tmq.tools.cli import build_parser, main


class EnvironmentDefaultsTests:
    def test_options_take_their_environment_variable_through_their_type(self, monkeypatch):
        monkeypatch.setenv("TMQ_TOPIC", "gpu")
        monkeypatch.setenv("TMQ_RATE", "250")
        monkeypatch.setenv("TMQ_LOOP", "true")
        args = build_parser().parse_args(["producer", "--csv", "data.csv"])
        assert (args.topic, args.rate, args.loop) == ("gpu", 250.0, True)

    def test_the_command_line_wins(self, monkeypatch):
        monkeypatch.setenv("TMQ_TOPIC", "gpu")
        args = build_parser().parse_args(["producer", "--csv", "x", "--topic", "other"])
        assert args.topic == "other"

    def test_required_options_and_groups_are_satisfied_by_the_environment(self, monkeypatch):
        monkeypatch.setenv("TMQ_SCRAPE", "http://127.0.0.1:9400/metrics")
        monkeypatch.setenv("TMQ_TOPIC", "gpu")
        args = build_parser().parse_args(["producer"])
        assert (args.scrape, args.csv, args.topic) == ("http://127.0.0.1:9400/metrics", None, "gpu")

    def test_a_bad_value_is_a_usage_error(self, monkeypatch, capsys):
        monkeypatch.setenv("TMQ_RATE", "fast")
        with pytest.raises(SystemExit) as exit_:
            main(["producer", "--csv", "x", "--topic", "t"])
        assert exit_.value.code == 2
        assert "--rate" in capsys.readouterr().err

    def test_help_names_the_variables(self, capsys):
        with pytest.raises(SystemExit):
            main(["sink", "--help"])
        out = capsys.readouterr().out
        for name in ("TMQ_TOPIC", "TMQ_DSN", "TMQ_RETENTION_DAYS", "TMQ_BOOTSTRAP"):
            assert name in out

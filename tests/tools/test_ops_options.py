"""``--metrics-listen`` and ``--log-format`` on the broker (``tmq.tap`` Options, twistd's
too), the sink, the producer and the API: parsing, environment, usage errors."""

from __future__ import annotations

import pytest
from twisted.application.service import Application
from twisted.logger import FileLogObserver, ILogObserver
from twisted.python import usage

from tmq.service import BrokerService
from tmq.tap import Options, makeService
from tmq.tools.cli import build_parser, main


def broker_options(*arguments: str) -> Options:
    options = Options()
    options.parseOptions(["--data-dir", "/tmp/unused", *arguments])
    return options


class BrokerOptionTests:
    def test_metrics_listen_reaches_the_config(self):
        """--metrics-listen HOST:PORT becomes BrokerConfig.metrics_listen; default none."""
        assert broker_options()["config"].metrics_listen is None
        options = broker_options("--metrics-listen", "0.0.0.0:9100")
        assert options["config"].metrics_listen == "0.0.0.0:9100"

    def test_the_environment_sets_both(self, monkeypatch):
        """TMQ_METRICS_LISTEN and TMQ_LOG_FORMAT set the options."""
        monkeypatch.setenv("TMQ_METRICS_LISTEN", "127.0.0.1:9200")
        monkeypatch.setenv("TMQ_LOG_FORMAT", "json")
        options = broker_options()
        assert options["config"].metrics_listen == "127.0.0.1:9200"
        assert options["log-format"] == "json"

    @pytest.mark.parametrize(
        ("arguments", "message"),
        [
            (["--metrics-listen", "9100"], "--metrics-listen takes HOST:PORT, not '9100'"),
            (["--log-format", "xml"], "--log-format takes text or json, not 'xml'"),
        ],
    )
    def test_bad_values_are_usage_errors(self, arguments, message):
        """A bad --metrics-listen or --log-format is a usage error saying what is allowed."""
        with pytest.raises(usage.UsageError, match=message):
            broker_options(*arguments)

    def test_tmq_broker_exits_2_on_a_bad_metrics_listen(self, capsys):
        """``tmq broker --metrics-listen nonsense`` exits 2 with the reason on stderr."""
        assert main(["broker", "--data-dir", "/tmp/unused", "--metrics-listen", "x"]) == 2
        assert "--metrics-listen takes HOST:PORT" in capsys.readouterr().err

    def test_twistd_json_logging_is_the_applications_observer(self, monkeypatch):
        """Under twistd, --log-format json makes the application's ILogObserver (which
        twistd begins logging to) a JSON observer; text leaves twistd's own."""
        monkeypatch.setattr("tmq.tap.tune_gc", lambda: None)
        text = makeService(broker_options("--listen", "127.0.0.1:0"))
        assert isinstance(text, BrokerService)
        service = makeService(broker_options("--log-format", "json"))
        application = Application("tmq-broker")
        service.setServiceParent(application)
        assert isinstance(application.getComponent(ILogObserver), FileLogObserver)
        [broker] = list(service)
        assert isinstance(broker, BrokerService)


class CommandOptionTests:
    @pytest.mark.parametrize(
        "command",
        [
            ["sink", "--topic", "t", "--dsn", "postgresql://x/y"],
            ["producer", "--csv", "x.csv", "--topic", "t"],
        ],
    )
    def test_metrics_listen_and_log_format(self, command):
        """The sink and the producer take --metrics-listen (default none) and
        --log-format (default text)."""
        args = build_parser().parse_args(command)
        assert (args.metrics_listen, args.log_format) == (None, "text")
        args = build_parser().parse_args(
            [*command, "--metrics-listen", ":9100", "--log-format", "json"]
        )
        assert (args.metrics_listen, args.log_format) == (":9100", "json")

    @pytest.mark.parametrize("command", [["sink", "--topic", "t"], ["producer", "--topic", "t"]])
    def test_a_bad_metrics_listen_is_a_usage_error(self, command, capsys):
        """A --metrics-listen that is not HOST:PORT exits 2 naming the option."""
        with pytest.raises(SystemExit) as exit_:
            main([*command, "--metrics-listen", "localhost"])
        assert exit_.value.code == 2
        assert "--metrics-listen: takes HOST:PORT, not 'localhost'" in capsys.readouterr().err

    def test_the_api_takes_log_format_from_the_environment(self, monkeypatch):
        """``tmq api`` reads --log-format from TMQ_LOG_FORMAT."""
        monkeypatch.setenv("TMQ_LOG_FORMAT", "json")
        assert build_parser().parse_args(["api", "--dsn", "x"]).log_format == "json"

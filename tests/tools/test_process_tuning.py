"""``tmq.process.tune_gc``, applied by the ``tmq`` command and the twistd plugin."""

from __future__ import annotations

import gc

import pytest

from tmq.process import GC_THRESHOLDS, tune_gc
from tmq.tap import Options, makeService
from tmq.tools import cli


@pytest.fixture
def default_thresholds():
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*saved)


class TuneGcTests:
    def test_sets_the_thresholds(self, default_thresholds):
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] > 700
        assert gc.isenabled()

    def test_the_tmq_command_tunes(self, default_thresholds, tmp_path):
        """A subcommand run through ``tmq`` runs with the tuned thresholds."""
        output = tmp_path / "fleet.csv"
        arguments = ["gen", "--hosts", "1", "--gpus-per-host", "1", "--scrapes", "1"]
        assert cli.main([*arguments, "--output", str(output)]) == 0
        assert output.read_text().startswith("timestamp,")
        assert gc.get_threshold() == GC_THRESHOLDS

    def test_the_twistd_plugin_tunes(self, default_thresholds, tmp_path):
        options = Options()
        options.parseOptions(["--data-dir", str(tmp_path), "--listen", "127.0.0.1:0"])
        makeService(options)
        assert gc.get_threshold() == GC_THRESHOLDS

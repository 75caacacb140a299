"""On-the-fly boxes at inference use the tagger training used (RAM++), or say how they differ (issue 26 item 4)."""
import argparse
import logging

import pytest

from mg_llava.inference import cli


def _args(*argv):
    parser = argparse.ArgumentParser()
    cli.add_box_generator_args(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def warnings(monkeypatch):
    logged = []
    monkeypatch.setattr(cli, "print_log", lambda msg, logger=None, level=logging.INFO: logged.append((level, msg)))
    return logged


def test_the_default_tagger_is_ram_plus_when_installed(monkeypatch, warnings):
    monkeypatch.setattr(cli, "ram_is_installed", lambda: True)
    assert _args().tagger is None
    assert cli.choose_tagger(None) == "ram_plus" and warnings == []
    with pytest.raises(SystemExit, match="ram_plus .*the training tagger.* needs --tagger-model"):
        cli.build_box_generator(_args("--detector", "owlv2"))


def test_without_ram_plus_a_choice_is_required(monkeypatch, warnings):
    monkeypatch.setattr(cli, "ram_is_installed", lambda: False)
    with pytest.raises(SystemExit, match="tagged by RAM\\+\\+ .* not installed.*--tagger clip"):
        cli.choose_tagger(None)
    with pytest.raises(SystemExit, match="tagged by RAM\\+\\+"):
        cli.build_box_generator(_args("--detector", "owlv2", "--tagger-model", "clip"))


@pytest.mark.parametrize("tagger, vocabulary, names", [("clip", None, "lvis"), ("fixed", ["cat", "dog"], "cat, dog")])
def test_another_tagger_is_logged_with_the_difference(monkeypatch, warnings, tagger, vocabulary, names):
    monkeypatch.setattr(cli, "ram_is_installed", lambda: False)
    assert cli.choose_tagger(tagger, vocabulary) == tagger
    [(level, message)] = warnings
    assert level == logging.WARNING
    assert f"--tagger {tagger}" in message and names in message and "not RAM++ as in training" in message


def test_boxes_found_on_the_fly_use_the_official_owlv2_processor(tiny_models, warnings):
    generator = cli.build_box_generator(_args("--detector", tiny_models["owlv2"], "--tagger", "fixed",
                                              "--vocabulary", "cat,dog"))
    assert generator.detector.preprocess == "transformers"
    assert len(warnings) == 1  # the fixed tagger is not the training one
    fast = cli.build_box_generator(_args("--detector", tiny_models["owlv2"], "--tagger", "fixed",
                                         "--detector-preprocess", "torch"))
    assert fast.detector.preprocess == "torch"


def test_a_released_rule_model_gets_boxes_in_the_released_format(tiny_models, warnings):
    args = _args("--detector", tiny_models["owlv2"], "--tagger", "fixed")
    assert cli.build_box_generator(args).detector.box_format == "clean"
    assert cli.build_box_generator(args, box_rule="released").detector.box_format == "released"

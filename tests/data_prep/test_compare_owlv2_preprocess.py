"""tools/compare_owlv2_preprocess.py: the official processor against the torch resize, on a tiny OWLv2."""
import importlib.util
import json
import os.path as osp

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_reports_the_box_difference_of_the_two_preprocessings(tiny_models, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("compare_owlv2", osp.join(REPO, "tools",
                                                                            "compare_owlv2_preprocess.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    summary = tool.main(["--detector", tiny_models["owlv2"], "--images", "coffee", "chelsea",
                         "--out", str(tmp_path / "diff.json")])
    with open(tmp_path / "diff.json") as f:
        written = json.load(f)
    assert written["summary"] == summary and [r["image"] for r in written["images"]] == ["coffee", "chelsea"]
    assert 0 < summary["identical"] <= min(summary["boxes_transformers"], summary["boxes_torch"])
    # the two inputs differ, so every patch's box moves a little, and none by more than a few pixels
    assert 0 < summary["patch_box_mean_abs_px"] <= summary["patch_box_max_abs_px"] < 10
    assert "coffee" in capsys.readouterr().out

"""tools/benchmark_boxgen.py: the tiny run reports every stage; the real-size models construct (meta device)."""
import importlib.util
import json
import os.path as osp

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("benchmark_boxgen", osp.join(REPO, "tools", "benchmark_boxgen.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_real_size_architectures_construct_on_the_meta_device(benchmark, tmp_path):
    result = benchmark.main(["--real-size", "--device", "meta", "--out", str(tmp_path / "meta.json")])
    # google/owlv2-large-patch14-ensemble has 437.6 M parameters, openai/clip-vit-large-patch14 427.6 M.
    assert result["owlv2_params"] == pytest.approx(437.6e6, rel=2e-3)
    assert result["clip_params"] == pytest.approx(427.6e6, rel=2e-3)
    assert result["owlv2_input"] == 1008
    with open(tmp_path / "meta.json") as f:
        assert json.load(f) == result


def test_tiny_benchmark_reports_images_per_second(benchmark, tmp_path, capsys):
    result = benchmark.main(["--device", "cpu", "--batch-size", "2", "--num-batches", "1", "--warmup", "0",
                             "--image-size", "160x120", "--vocabulary", "coco80", "--num-workers", "0",
                             "--out", str(tmp_path / "tiny.json")])
    stages = result["images_per_s"]
    assert {"tagger (CLIP)", "detector (OWLv2)", "tagger + detector", "pipeline (0 decode workers, writes)"} \
        <= set(stages)
    assert all(v > 0 for v in stages.values())
    assert "images/s" in capsys.readouterr().out

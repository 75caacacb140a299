"""tools/rehearse.py at real widths with 2 layers per tower (the LLM and CLIP at 2 layers, ConvNeXt-L at 2 blocks per
stage): Phi-3 stage 1 -> LoRA stage 2 -> export -> chat -> evaluate through the real CLIs, the stand-in hub resolving
offline, one step per stage, on the sample at the config's full max_length with 100 boxes, and every phase measured."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, "tools"))
import rehearse  # noqa: E402

PHI3 = osp.join(ROOT, "xtuner_configs", "phi3_mini_4k_instruct", "mg_llava_phi3_mini_4k_instruct_pretrain.py")


def test_stand_in_hub_resolves_offline_and_tokenizer_has_the_real_vocabulary(tmp_path):
    hf_home = str(tmp_path / "hf")
    rehearse.stand_in_tokenizer("phi3", 32064).save_pretrained(rehearse.hub_folder(hf_home, "someone/model"))
    code = ("from transformers import AutoTokenizer; t = AutoTokenizer.from_pretrained('someone/model'); "
            "print(len(t), '<|assistant|>' in t.get_vocab(), '<|end|>' in t.get_vocab())")
    env = dict(os.environ, HF_HOME=hf_home, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["32064", "True", "True"]
    env["HF_HOME"] = str(tmp_path / "elsewhere")  # not found elsewhere: the resolution is the stand-in's
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True).returncode != 0


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    work = tmp_path_factory.mktemp("rehearsal")
    result = rehearse.main([PHI3, "--work-dir", str(work), "--samples", "1", "--layers", "2", "--steps", "1",
                            "--threads", "2", "--json", str(work / "record.json")])
    return result, work


def test_every_phase_ran_and_is_measured(record):
    result, work = record
    with open(work / "record.json") as f:
        assert json.load(f) == json.loads(json.dumps(result))
    phases = {p["phase"]: p for p in result["phases"]}
    assert list(phases) == ["prepare", "stage1", "stage2_lora", "export", "chat", "evaluate"]
    for name in ("stage1", "stage2_lora", "export", "chat", "evaluate"):
        assert phases[name]["largest_process_rss_gb"] > 1.0, name  # at least the 0.42B-parameter LLM in bf16
        assert phases[name]["peak_rss_gb"] >= phases[name]["largest_process_rss_gb"]
    for name in ("stage1", "stage2_lora"):
        assert phases[name]["iterations"] == 1 and phases[name]["optimizer_steps"] == 1  # --steps 1
        assert phases[name]["seconds_per_step"] > 0 and phases[name]["checkpoint_gb"] > 0
        assert all(loss == loss for loss in phases[name]["losses"])  # finite
    llm = result["prepared"]["llm"]["parameters"]
    assert phases["export"]["export_gb"] > 2 * llm / 1e9  # the bf16 LLM (0.42B parameters) and the vision modules
    assert phases["evaluate"]["metrics"]["num_items"] == 2 and phases["evaluate"]["metrics"]["metrics"]["num_scored"] == 2
    assert "ASSISTANT:" in phases["chat"]["answer_log_tail"]
    assert result["prepared"]["llm"]["vocab"] == 32064 and result["prepared"]["llm"]["layers"] == 2


def test_convnext_l_keeps_its_widths_at_2_blocks_per_stage(record):
    result, work = record
    convnext = result["prepared"]["convnext"]
    assert convnext["widths"] == [192, 384, 768, 1536] and convnext["blocks_per_stage"] == [2, 2, 2, 2]
    assert convnext["model_name"].startswith("local-dir:" + str(work))
    with open(osp.join(work, "export", "mg_llava.json")) as f:  # what chat and evaluate rebuilt the model from
        assert json.load(f)["visual_encoder_aux"]["model_name"] == convnext["model_name"]


def test_a_sample_reached_max_length_with_100_boxes(record):
    result, _ = record
    for phase in result["phases"]:
        if phase["phase"] in ("stage1", "stage2_lora"):
            longest = phase["longest_sequence"]
            assert longest["text"] == 2048 - 576 and longest["boxes"] == 100
            assert longest["length"] == 1472 - 1 + 576 + 100
            assert phase["trained_sequence"] == longest  # the one step of --steps 1 trains it


def test_stage2_is_the_lora_wrapper_of_the_shipped_finetune(record):
    result, work = record
    wrapper = result["prepared"]["stage2_config"]
    with open(wrapper) as f:
        text = f.read()
    assert "from ..phi3_mini_4k_instruct.mg_llava_phi3_mini_4k_instruct_finetune import *" in text
    assert osp.isfile(osp.join(work, "export", "llm", "config.json"))
    assert os.listdir(osp.join(work, "work_dirs", "stage2"))

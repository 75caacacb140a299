"""The paper's video recipe (Sections 3.3, 4.1) as Vicuna-7B configs: video pretraining on image + video captions
with image stage 1's trainable parts, then full video instruction tuning on LLaVA-665K + VideoInstruct-100K from it;
the QLoRA config is a variant of the second. The tiny video pair has the same shape. (Every config also parses, builds
on meta and derives its fields in test_configs.py / test_config_settings.py.)"""
import os.path as osp

from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
VICUNA = osp.join(ROOT, "xtuner_configs", "vicuna_7b_v15")
TINY = osp.join(ROOT, "xtuner_configs", "tiny")


def sources(cfg):
    dataset = cfg.train_dataloader.dataset
    return list(dataset.get("datasets") or [dataset])


def test_video_pretrain_is_image_stage1_on_image_and_video_captions():
    image = Config.fromfile(osp.join(VICUNA, "mg_llava_vicuna_7b_v15_pretrain.py"))
    video = Config.fromfile(osp.join(VICUNA, "mg_llava_vicuna_7b_v15_video_pretrain.py"))
    images, videos = sources(video)
    assert images.data_path == image.llava_pretrain_data_path.replace(image.data_root, video.data_root)
    assert "video_folder" not in images and videos.video_folder and videos.num_frames == 8
    assert videos.data_path.endswith("Video-LLaVA/valley_703k.json")
    # what trains: the fusion and both projectors (the LLM frozen, no LoRA, no starting weights), as image stage 1
    assert video.model.freeze_llm and "llm_lora" not in video.model and "pretrained_pth" not in video.model
    assert (video.lr, video.batch_size * video.num_gpus * video.accumulative_counts) == (image.lr, 256)
    assert video.train_dataloader.sampler.type.__name__ == "ModalityLengthGroupedSampler"


def test_video_finetune_trains_the_llm_in_full_from_the_video_pretrain():
    image = Config.fromfile(osp.join(VICUNA, "mg_llava_vicuna_7b_v15_finetune.py"))
    video = Config.fromfile(osp.join(VICUNA, "mg_llava_vicuna_7b_v15_video_finetune.py"))
    qlora = Config.fromfile(osp.join(VICUNA, "mg_llava_vicuna_7b_v15_video_finetune_qlora.py"))
    assert video.model.pretrained_pth.endswith("work_dirs/mg_llava_vicuna_7b_v15_video_pretrain")
    instructions, videos = sources(video)
    assert instructions.data_path.endswith("llava_v1_5_mix665k.json") and "video_folder" not in instructions
    assert videos.data_path.endswith("videochatgpt_llavaformat_100k.json") and videos.num_frames == 8
    assert not video.model.freeze_llm and "llm_lora" not in video.model and "quantization_config" not in video.model.llm
    assert (video.lr, video.batch_size * video.num_gpus * video.accumulative_counts) == (image.lr, 128)
    assert video.strategy.config.zero_optimization.stage == 3
    assert [h.type.__name__ for h in video.custom_hooks][-1] == "ZeRO3TrainableWeightsHook"
    # the QLoRA variant: the same data, the LLM frozen in 4 bits under rank-512 adapters
    assert [s.data_path for s in sources(qlora)] == [s.data_path for s in sources(video)]
    assert qlora.model.freeze_llm and qlora.model.llm_lora.r == 512


def test_tiny_video_pair_has_the_recipe_shape():
    pretrain = Config.fromfile(osp.join(TINY, "mg_llava_tiny_cpu_video_pretrain.py"))
    finetune = Config.fromfile(osp.join(TINY, "mg_llava_tiny_cpu_video_finetune.py"))
    assert pretrain.model.freeze_llm and "pretrained_pth" not in pretrain.model
    assert [bool(s.get("video_folder")) for s in sources(pretrain)] == [False, True]  # image + video captions
    assert not finetune.model.freeze_llm and "llm_lora" not in finetune.model
    assert finetune.model.pretrained_pth.endswith("work_dirs/mg_llava_tiny_cpu_video_pretrain")
    assert all(s.get("video_folder") for s in sources(finetune))

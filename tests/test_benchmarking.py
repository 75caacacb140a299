"""mg_llava/benchmarking.py: the published-architecture context leaves the libraries as it found them."""
import open_clip
from mmengine.config import ConfigDict
from transformers import CLIPVisionModel, PreTrainedModel

from mg_llava.benchmarking import published_architectures


def test_published_architectures_restores_what_it_patched(tmp_path):
    create_model = open_clip.create_model
    model_cfg = ConfigDict(llm=dict(pretrained_model_name_or_path="lmsys/vicuna-7b-v1.5"),
                           visual_encoder=dict(pretrained_model_name_or_path="openai/clip-vit-large-patch14-336"))
    with published_architectures(model_cfg, "meta", str(tmp_path)):
        assert open_clip.create_model is not create_model
        assert "from_pretrained" in CLIPVisionModel.__dict__
    assert open_clip.create_model is create_model
    # Inherited again, so a later patch of PreTrainedModel.from_pretrained reaches CLIP (it did not: a stale bound
    # method left on the class made the AVG config meta-build tests fail after the memory-plan tests).
    assert "from_pretrained" not in CLIPVisionModel.__dict__
    assert CLIPVisionModel.from_pretrained.__func__ is PreTrainedModel.from_pretrained.__func__

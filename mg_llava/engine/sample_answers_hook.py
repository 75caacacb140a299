"""Sample answers during training: the model answers a few fixed image questions before training, every N
iterations and at the end, as XTuner's ``EvaluateChatHook`` does for its LLaVA, but through our own preprocessing
(both image views, the object boxes, the prompt template) and generation (:mod:`mg_llava.inference`)."""
import os.path as osp
from typing import Optional, Sequence

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from mg_llava.dataset import DataSettings

SAMPLES_DIR = osp.join(osp.dirname(osp.abspath(__file__)), "samples")  # the shipped sample images


def find_sample_image(path: str) -> str:
    """``path`` as given (absolute, or relative to the working directory), else one of the shipped sample images."""
    for candidate in (path, osp.join(SAMPLES_DIR, path)):
        if osp.isfile(candidate):
            return candidate
    raise FileNotFoundError(f"SampleAnswersHook: sample image {path!r} is neither a file here nor one of the shipped "
                            f"samples in {SAMPLES_DIR}")


@HOOKS.register_module()
class SampleAnswersHook(Hook):
    """Logs the model's greedy answers to ``samples`` before training, every ``every_n_iters`` iterations and after
    training.

    Args:
        tokenizer, image_views, prompt_template: as the training data's; None (the default) takes the config's
            training data settings (:meth:`~mg_llava.dataset.DataSettings.from_config`: the training dataset's
            tokenizer, views and template), so a config for another LLM needs no change here.
        samples: ``dict(image=<path>, question=<text>, boxes=<box-file entry {boxes, scores, labels} in original
            pixels, or None>)`` each; a relative image path not found in the working directory is looked up among
            the shipped sample images (``mg_llava/engine/samples``).
        every_n_iters: answer every this many iterations (None: only before and after training).
        max_new_tokens, system: generation length and an optional system prompt.
        max_boxes, iou_threshold, box_rule: the load-time box rules (None: the training data's, so a config that
            trains with the released box rule answers with it too).
        dataset_info: before training, also run XTuner's ``DatasetInfoHook`` with the same tokenizer (it logs the
            number of training samples and the first one decoded).
    """

    priority = "LOW"

    def __init__(self, samples: Sequence[dict], tokenizer=None, image_views=None, prompt_template=None,
                 every_n_iters: Optional[int] = None, max_new_tokens: int = 64, max_boxes: Optional[int] = None,
                 iou_threshold: Optional[float] = None, box_rule: Optional[str] = None, system: Optional[str] = None,
                 dataset_info: bool = True):
        if not samples:
            raise ValueError("SampleAnswersHook needs at least one sample")
        for i, sample in enumerate(samples):
            missing = {"image", "question"} - set(sample)
            if missing:
                raise ValueError(f"SampleAnswersHook sample {i}: missing {sorted(missing)}")
        self.samples = [dict(sample, image=find_sample_image(sample["image"])) for sample in samples]
        self.settings = dict(tokenizer=tokenizer, image_views=image_views, prompt_template=prompt_template,
                             max_boxes=max_boxes, iou_threshold=iou_threshold, box_rule=box_rule)
        self.system = system
        self.dataset_info = dataset_info
        self.preprocessor = None
        self.every_n_iters = every_n_iters
        self.max_new_tokens = max_new_tokens
        self.prepared = None

    def data_settings(self, cfg=None) -> DataSettings:
        """The training data's settings of ``cfg`` (the runner's config), with the ones given to the hook instead."""
        if cfg is not None:
            return DataSettings.from_config(cfg).replace(**self.settings)
        missing = [k for k in ("tokenizer", "image_views", "prompt_template") if self.settings[k] is None]
        if missing:
            raise ValueError(f"SampleAnswersHook: give {missing} or run it with a config that has a training dataset")
        return DataSettings(**{k: v for k, v in self.settings.items() if v is not None})

    def build_preprocessor(self, cfg=None) -> None:
        """Our :class:`Preprocessor` from :meth:`data_settings`."""
        from mg_llava.inference.preprocess import Preprocessor

        settings = self.data_settings(cfg)
        self.tokenizer_cfg = settings.tokenizer
        self.preprocessor = Preprocessor.from_settings(settings, system=self.system)

    def answers(self, model) -> list:
        """The model's greedy answers to the samples, in order (one batch)."""
        from mg_llava.inference.generation import generate

        preprocessor = self.preprocessor
        if self.prepared is None:  # views and boxes once
            self.prepared = [preprocessor.prepare_image(s["image"], s.get("boxes"), where=f"sample {i}")
                             for i, s in enumerate(self.samples)]
        inputs = [preprocessor.sample(s["question"], (), image) for s, image in zip(self.samples, self.prepared)]
        device = next(model.llm.parameters()).device
        return generate(model, preprocessor.tokenizer, inputs, max_new_tokens=self.max_new_tokens,
                        stop_words=preprocessor.stop_words, device=device)

    def _log_answers(self, runner, when: str) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        was_training = model.training
        model.eval()
        try:
            answers = self.answers(model)
        finally:
            model.train(was_training)
        for sample, answer in zip(self.samples, answers):
            runner.logger.info(f"Sample answer ({when}) [{osp.basename(sample['image'])}] "
                               f"USER: {sample['question']} ASSISTANT: {answer}")

    def _log_dataset_info(self, runner) -> None:
        """XTuner's DatasetInfoHook: the sample count and the first sample's text. Its decoding knows only the image
        placeholder, so a first sample with the video placeholder (-201) is decoded here, shown as ``<video>``."""
        from xtuner.engine.hooks import DatasetInfoHook

        from mg_llava.dataset import DEFAULT_VIDEO_TOKEN, VIDEO_TOKEN_INDEX

        hook = DatasetInfoHook(self.tokenizer_cfg)
        dataset = runner.train_dataloader.dataset
        ids = [int(t) for t in dataset[0]["input_ids"]]
        if VIDEO_TOKEN_INDEX not in ids:
            hook.before_train(runner)
            return
        text, start = "", 0
        for i, token in enumerate(ids + [VIDEO_TOKEN_INDEX]):
            if token == VIDEO_TOKEN_INDEX:
                text += hook.tokenizer.decode(ids[start:i]) + (DEFAULT_VIDEO_TOKEN if i < len(ids) else "")
                start = i + 1
        runner.logger.info(f"Num train samples {len(dataset)}")
        runner.logger.info("train example:")
        runner.logger.info(text)

    def before_train(self, runner) -> None:
        self.build_preprocessor(getattr(runner, "cfg", None))
        if self.dataset_info:
            self._log_dataset_info(runner)
        self._log_answers(runner, "before training")

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.every_n_iters and self.every_n_train_iters(runner, self.every_n_iters) \
                and not self.is_last_train_iter(runner):
            self._log_answers(runner, f"iteration {runner.iter + 1}")

    def after_train(self, runner) -> None:
        self._log_answers(runner, "after training")

"""``--model mg_llava`` for lmms-eval: the harness's requests answered with our loading, preprocessing and
batched generation (:mod:`mg_llava.inference`), so a task scores what ``tools/evaluate.py`` would.

``--model_args`` are the options of ``tools/evaluate.py`` written ``key=value`` (underscores for dashes), with
``pretrained`` for ``--checkpoint``:

- the model: ``pretrained=<exported folder>``; or ``config=<training config>,pretrained=<iter_N.pth>``; or the
  released-checkpoint route ``pretrained=<.pth>,llm=...,visual_encoder=...,visual_encoder_aux=...,template=...``;
  plus ``device``, ``dtype``, ``box_rule``, ``granularity`` (AVG-LLaVA), ``system``, ``allow_unsafe_pickle``, ...
- the boxes (one of them is required, as for ``tools/evaluate.py``): ``boxes=<box file>`` looked up by the
  document's ``box_key`` field (default ``question_id``; ``allow_missing_boxes=True`` gives an unlisted image zero
  boxes); ``detector=<OWLv2>,tagger_model=<RAM++ checkpoint>`` to find them on the fly as in training
  (``tagger=clip,tagger_model=<CLIP>``: another distribution, logged with a WARNING); or ``no_boxes=True``.
- ``batch_size`` (or lmms-eval's ``--batch_size``), ``max_new_tokens`` (when the task does not set it; 128),
  ``on_bad_sample=raise|skip`` (an unreadable image or a missing box entry: stop naming the document, or answer
  ``""`` for it (log-likelihood -inf), counted and logged), ``num_frames`` (per video; default: the model's).

Generation is greedy (sampling only when a task asks for ``temperature > 0``), batched by ``batch_size`` among
requests with the same generation settings; the task's ``until`` strings stop an answer like the template's stop
words. One image or video per question (a document with several is an error naming it; a video is a path with a
video extension or a folder of frames, its frames sampled and boxed as the training config says); a document
without visuals is asked as text. ``loglikelihood`` requests (multiple choice scored by likelihood) score the
continuation after the same prompt, ``batch_size`` per forward pass. With several processes (``accelerate
launch``) lmms-eval shards the documents by ``RANK``/``WORLD_SIZE`` and each process uses GPU ``LOCAL_RANK``
(not tested here: no GPU).
"""
import argparse
import json
import logging
import os
import os.path as osp
import re
from typing import List, Optional, Tuple

import torch

from lmms_eval.api.model import lmms
from mmengine.logging import print_log
from PIL import Image
from tqdm import tqdm
from xtuner.utils import IGNORE_INDEX

from mg_llava.dataset import find_entry, llava_box_collate_fn, load_box_file
from mg_llava.inference.cli import add_box_generator_args, add_model_args, build_box_generator, load_from_args
from mg_llava.inference.generation import generate, pad_token_id
from mg_llava.inference.preprocess import ImageLoadError, MissingBoxesError
from mg_llava.inference.video_qa import VIDEO_EXTENSIONS

ALIASES = {"pretrained": "checkpoint"}  # lmms-eval's name for the weights -> our tools' option
DEFAULT_MAX_NEW_TOKENS = 128  # tools/evaluate.py's default for short answers
GENERATION_KEYS = ("until", "max_new_tokens", "temperature", "do_sample", "top_p", "num_beams")


class ModelArgsError(ValueError):
    """Bad ``--model_args``; the message names them as lmms-eval's ``key=value`` pairs."""


class _ModelArgsParser(argparse.ArgumentParser):
    def error(self, message):
        raise ModelArgsError(f"mg_llava --model_args: {as_model_args(message)}")


def as_model_args(message: str) -> str:
    """Our tools' option names in a message -> the ``key`` of ``--model_args`` (``--checkpoint`` -> ``pretrained``)."""
    names = {v: k for k, v in ALIASES.items()}
    return re.sub(r"--([a-z][a-z-]*)", lambda m: names.get(m.group(1), m.group(1).replace("-", "_")), message)


def model_arg_parser() -> argparse.ArgumentParser:
    parser = _ModelArgsParser(prog="mg_llava", add_help=False, allow_abbrev=False)
    add_model_args(parser)
    add_box_generator_args(parser)
    group = parser.add_argument_group("mg_llava in lmms-eval")
    group.add_argument("--boxes", help="box file (released format) keyed by the documents' --box-key field")
    group.add_argument("--box-key", default="question_id", help="the document field naming its box-file entry")
    group.add_argument("--no-boxes", action="store_true")
    group.add_argument("--allow-missing-boxes", action="store_true")
    group.add_argument("--on-bad-sample", default="raise", choices=["raise", "skip"])
    group.add_argument("--batch-size", default="1")
    group.add_argument("--max-batch-size")  # lmms-eval passes it with --batch_size auto:N, which is not supported
    group.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    group.add_argument("--num-frames", type=int, help="frames sampled per video (default: the training config's)")
    return parser


def parse_model_args(kwargs: dict) -> argparse.Namespace:
    """lmms-eval's parsed ``--model_args`` (values already turned into bool/int/float/str) -> our tools' options."""
    argv = []
    for key, value in kwargs.items():
        flag = "--" + ALIASES.get(key, key).replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is not False and value is not None:
            argv += [flag, str(value)]
    args = model_arg_parser().parse_args(argv)
    if sum([args.boxes is not None, args.detector is not None, args.no_boxes]) != 1:
        raise ModelArgsError("mg_llava --model_args: give exactly one of boxes=<box file keyed by the documents' "
                             "box_key>, detector=<OWLv2 model> (boxes found on the fly) or no_boxes=True")
    try:
        args.batch_size = int(args.batch_size)
    except ValueError:
        raise ModelArgsError(f"mg_llava: batch_size must be a number, got {args.batch_size!r}") from None
    if args.batch_size < 1:
        raise ModelArgsError(f"mg_llava: batch_size must be at least 1, got {args.batch_size}")
    return args


def flatten_visuals(visuals) -> list:
    """``doc_to_visual``'s output (None, a visual, a list, or a list of lists) -> a flat list of visuals."""
    if visuals is None:
        return []
    if not isinstance(visuals, (list, tuple)):
        return [visuals]
    return [v for item in visuals for v in flatten_visuals(item)]


class MGLLaVALmms(lmms):
    """An MG-LLaVA model (any :mod:`mg_llava.inference.loading` route) answering lmms-eval's requests."""

    is_simple = True

    def __init__(self, **model_args) -> None:
        super().__init__()
        args = parse_model_args(model_args)
        self.box_table = load_box_file(args.boxes) if args.boxes else None  # a bad box file fails before the model
        try:
            self.loaded = load_from_args(args)
            self.box_generator = build_box_generator(args, device=self.loaded.device,
                                                     box_rule=self.loaded.preprocessor.box_rule)
        except SystemExit as err:  # the tools' messages for bad option combinations
            raise ModelArgsError(f"mg_llava --model_args: {as_model_args(str(err))}") from None
        if args.num_frames is not None:
            self.loaded.preprocessor.num_frames = args.num_frames
        self.box_key = args.box_key
        self.allow_missing_boxes = args.allow_missing_boxes
        self.on_bad_sample = args.on_bad_sample
        self.batch_size = args.batch_size
        self.max_new_tokens = args.max_new_tokens
        self.skipped: List[str] = []
        self._ignored_generation_keys = set()
        self._rank = int(os.environ.get("RANK", 0))
        self._world_size = int(os.environ.get("WORLD_SIZE", 1))

    @property
    def device(self):
        return self.loaded.device

    @property
    def model(self):
        return self.loaded.model

    @property
    def tokenizer(self):
        return self.loaded.tokenizer

    # ------------------------------------------------------------------------------------------------- samples
    def _boxes(self, doc: dict, where: str):
        if self.box_generator is not None:
            return self.box_generator
        if self.box_table is None:
            return None
        if self.box_key not in doc:
            raise ModelArgsError(f"{where}: no field {self.box_key!r} to look its boxes up by (fields: "
                                 f"{sorted(doc)}); set box_key=<field> in --model_args")
        wanted = str(doc[self.box_key])
        if find_entry(self.box_table, [wanted]) is not None:
            return self.box_table, wanted
        if self.allow_missing_boxes:
            return None
        raise MissingBoxesError(f"{where}: no entry {wanted!r} in box file {self.box_table.path}")

    def _video_boxes(self, doc: dict, video: str, where: str):
        """A video's per-frame boxes: the box file's video entry keyed by the document's ``box_key``, else by the
        video's path or file name (entries without an id are keyed by their video), or found on the fly on each
        sampled frame."""
        if self.box_table is None:
            return self.box_generator
        keys = [str(doc[self.box_key])] if self.box_key in doc else []
        keys += [k for k in (video, osp.basename(video.rstrip("/"))) if k not in keys]
        key = find_entry(self.box_table, keys, video=True)
        if key is not None:
            return self.box_table, key
        if self.allow_missing_boxes:
            return None
        raise MissingBoxesError(f"{where}: no video entry {' or '.join(map(repr, keys))} in box file "
                                f"{self.box_table.path}")

    def sample(self, request) -> dict:
        """One generate_until request -> a sample of the training dataset's format (question, image, boxes)."""
        context, _, doc_to_visual, doc_id, task, split = request.args
        doc = self.task_dict[task][split][doc_id]
        where = f"{task} ({split}) doc {doc_id}"
        visuals = flatten_visuals(doc_to_visual(doc)) if doc_to_visual is not None else []
        preprocessor = self.loaded.preprocessor
        if not visuals:
            return preprocessor.sample(context, sample_id=where)
        if len(visuals) > 1:
            raise ValueError(f"{where}: {len(visuals)} visuals; MG-LLaVA answers about one image per question")
        visual = visuals[0]
        if not isinstance(visual, (Image.Image, str)):
            raise ValueError(f"{where}: the visual is a {type(visual).__name__}; MG-LLaVA takes an image (a PIL "
                             f"image or an image file) or a video (a video file or a folder of frames)")
        if isinstance(visual, str) and (osp.isdir(visual) or visual.lower().endswith(VIDEO_EXTENSIONS)):
            video = preprocessor.prepare_video(visual, self._video_boxes(doc, visual, where), where=where)
            return preprocessor.sample(context, sample_id=where, video=video)
        prepared = preprocessor.prepare_image(visual, self._boxes(doc, where), where=where)
        return preprocessor.sample(context, (), prepared, sample_id=where)

    # ------------------------------------------------------------------------------------------------- generation
    def generation_settings(self, gen_kwargs: Optional[dict]) -> dict:
        """A task's ``generation_kwargs`` -> the settings :func:`generate` takes (greedy unless temperature > 0)."""
        gen = dict(gen_kwargs or {})
        until = gen.get("until") or []
        until = [until] if isinstance(until, str) else list(until)
        if int(gen.get("num_beams") or 1) != 1:
            raise NotImplementedError(f"mg_llava generates greedily (or samples); num_beams={gen['num_beams']} "
                                      f"is not supported")
        temperature = float(gen.get("temperature") or 0.0)
        if not gen.get("do_sample", True):
            temperature = 0.0
        ignored = sorted(set(gen) - set(GENERATION_KEYS) - self._ignored_generation_keys)
        if ignored:
            self._ignored_generation_keys.update(ignored)
            print_log(f"mg_llava: generation settings {ignored} are not used", "current", level=logging.WARNING)
        return dict(stop_words=self.loaded.preprocessor.stop_words + [u for u in until if u],
                    max_new_tokens=int(gen.get("max_new_tokens") or self.max_new_tokens),
                    temperature=temperature, top_p=float(gen.get("top_p") or 1.0))

    def _prepare(self, request, make_sample):
        try:
            return make_sample(request), None
        except (ImageLoadError, MissingBoxesError) as err:
            if self.on_bad_sample == "raise":
                raise
            return None, str(err)

    def _skip(self, error: str) -> None:
        self.skipped.append(error)
        print_log(f"mg_llava: skipped ({error}); counted as a wrong answer", "current", level=logging.WARNING)

    def generate_until(self, requests) -> List[str]:
        """Answers in request order; batches of ``batch_size`` among requests with equal generation settings."""
        answers: List[Optional[str]] = [None] * len(requests)
        groups = {}
        for index, request in enumerate(requests):
            settings = self.generation_settings(request.args[1])
            groups.setdefault(json.dumps(settings, sort_keys=True), []).append(index)
        bar = tqdm(total=len(requests), disable=self.rank != 0, desc="mg_llava answering")
        for key, indices in groups.items():
            settings = json.loads(key)
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size]
                prepared = [(i, *self._prepare(requests[i], self.sample)) for i in chunk]
                good = [(i, sample) for i, sample, error in prepared if error is None]
                for i, _, error in prepared:
                    if error is not None:
                        self._skip(error)
                        answers[i] = ""
                if good:
                    texts = generate(self.model, self.tokenizer, [s for _, s in good], device=self.device, **settings)
                    for (i, _), text in zip(good, texts):
                        answers[i] = text
                        self.cache_hook.add_partial("generate_until", requests[i].args[:2], text)
                bar.update(len(chunk))
        bar.close()
        if self.skipped:
            print_log(f"mg_llava: {len(self.skipped)} requests skipped so far (on_bad_sample=skip): empty answers, "
                      f"log-likelihood -inf", "current", level=logging.WARNING)
        return answers

    # ------------------------------------------------------------------------------------------------- likelihood
    def loglikelihood_sample(self, request) -> dict:
        """A loglikelihood request ``(context, continuation or doc_to_target, doc_to_visual, doc_id, task, split)``
        -> the context's sample followed by the continuation's tokens, which alone carry labels. The continuation
        is tokenised on its own, as the training encodes an answer after its prompt."""
        sample = self.sample(request)
        _, target, _, doc_id, task, split = request.args
        continuation = target if isinstance(target, str) else target(self.task_dict[task][split][doc_id])
        ids = torch.tensor(self.tokenizer.encode(continuation, add_special_tokens=False), dtype=torch.long)
        if not len(ids):
            raise ValueError(f"{task} ({split}) doc {doc_id}: the continuation {continuation!r} has no tokens")
        sample["input_ids"] = torch.cat([sample["input_ids"], ids])
        sample["labels"] = torch.cat([sample["labels"], ids])
        return sample

    @torch.no_grad()
    def loglikelihood(self, requests) -> List[Tuple[float, bool]]:
        """Per request: the log-probability of the continuation after the context (image, boxes and template
        included), and whether greedy decoding would write exactly it. ``batch_size`` requests per forward pass."""
        results: List[Tuple[float, bool]] = []
        pad_id = pad_token_id(self.tokenizer)
        bar = tqdm(total=len(requests), disable=self.rank != 0, desc="mg_llava scoring")
        for start in range(0, len(requests), self.batch_size):
            chunk = requests[start:start + self.batch_size]
            prepared = [self._prepare(request, self.loglikelihood_sample) for request in chunk]
            good = [sample for sample, error in prepared if error is None]
            scores = iter(self._score(good, pad_id) if good else [])
            for sample, error in prepared:
                if error is not None:
                    self._skip(error)
                results.append((float("-inf"), False) if error is not None else next(scores))
            bar.update(len(chunk))
        bar.close()
        return results

    def _score(self, samples: List[dict], pad_id: int) -> List[Tuple[float, bool]]:
        batch = llava_box_collate_fn(samples, pad_index=pad_id, return_hf_format=True)
        batch = {k: ([b.to(self.device) for b in v] if isinstance(v, list) else v.to(self.device))
                 for k, v in batch.items()}
        llm_inputs = self.model.prepare_llm_inputs(batch)  # (B, L') embeddings, right-padded; labels placed
        labels = llm_inputs.pop("labels")[:, 1:]
        logprobs = torch.log_softmax(self.model.llm(**llm_inputs).logits[:, :-1].float(), dim=-1)
        scored = labels != IGNORE_INDEX
        token_logprobs = logprobs.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
        greedy = logprobs.argmax(dim=-1) == labels
        return [(float(token_logprobs[b][scored[b]].sum()), bool(greedy[b][scored[b]].all()))
                for b in range(len(samples))]

    def generate_until_multi_round(self, requests):
        raise NotImplementedError("mg_llava answers single-round generate_until tasks; multi-round generation is not "
                                  "implemented")


__all__ = ["MGLLaVALmms", "ModelArgsError", "as_model_args", "flatten_visuals", "parse_model_args"]

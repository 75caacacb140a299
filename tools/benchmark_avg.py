"""AVG-LLaVA's saving against always-576: visual tokens and generation cost per granularity and for the router.

    python tools/benchmark_avg.py [--samples 8] [--new-tokens 32] [--repeats 3] [--json avg.json]

Two parts, one table each:

1. **Real shapes, by FLOP count** (nothing downloaded, no weights): Vicuna-7B with MG-LLaVA's vision side, one
   image with ``--boxes`` object tokens and ``--text-tokens`` prompt tokens, answering ``--new-tokens`` tokens.
   Prefill multiply-adds are counted with ``torch.utils.flop_counter`` on the real config (as tools/flops_report.py
   does); each decoded token costs one 1-token forward plus attention over the cache, 2 x layers x H x context
   MACs. The vision side (CLIP, ConvNeXt, fusion, RoIAlign, projectors) is the same for every granularity and is
   counted once as tools/flops_report.py counts it (``mg_llava/benchmarking.py``); the router (1148 tokens at H = 4096) is counted on the meta device.
2. **Tiny, measured on this machine's CPU**: a plain-LLaVA AVG model with a tiny CLIP at 336 px (the real 24 x 24
   grid, so the real 576 ... 36 token counts) and a tiny random LLM, generating ``--new-tokens`` tokens greedily for
   ``--samples`` real photographs. Rows: each forced granularity and the router's own choice (random weights here
   unless ``--router-checkpoint`` holds an RGLF-trained router for this tiny model), wall time after a burn-in,
   best of ``--repeats``.
"""
import argparse
import json
import os
import os.path as osp
import tempfile
import time

import torch
from tqdm import tqdm

from mg_llava.benchmarking import build_llm, count, vision_components

REAL_SIZES = (576, 288, 144, 72, 36)
QUESTION = "What is the main object in the image? Describe it."


# ------------------------------------------------------------------------------------------- real shapes, FLOPs


def llm_prefill_macs(name, tokens):
    return count(lambda: build_llm(name), lambda: (torch.zeros(1, tokens, dtype=torch.long),), fake=True)[1]


def router_macs(hidden):
    from mg_llava.model.avg import VisualGranularityRouter

    return count(lambda: VisualGranularityRouter(hidden, REAL_SIZES),
                 lambda: ([torch.zeros(1, n, hidden) for n in REAL_SIZES], torch.zeros(1, 32, hidden)))[1]


def real_shapes(text_tokens, boxes, new_tokens, name="Vicuna-7B"):
    from mg_llava.model.reference_configs import LLMS

    config = LLMS[name][1]
    layers, hidden = config["num_hidden_layers"], config["hidden_size"]
    vision, _ = vision_components(boxes)
    vision_macs = sum(macs for _, macs in vision.values())
    one_token = llm_prefill_macs(name, 1)
    route = router_macs(hidden)
    rows = []
    for size in tqdm(REAL_SIZES, desc="FLOP count per granularity"):
        context = text_tokens + size + boxes
        prefill = llm_prefill_macs(name, context)
        decode = sum(one_token + 2 * layers * hidden * (context + t) for t in range(new_tokens))
        rows.append(dict(grid_tokens=size, visual_tokens=size + boxes, llm_prefill_macs=prefill, llm_decode_macs=decode,
                         vision_macs=vision_macs, router_macs=route))
    base = rows[0]["vision_macs"] + rows[0]["llm_prefill_macs"] + rows[0]["llm_decode_macs"]  # always 576, no router
    for row in rows:
        row["total_macs"] = row["vision_macs"] + row["router_macs"] + row["llm_prefill_macs"] + row["llm_decode_macs"]
        row["visual_token_reduction"] = 1 - row["visual_tokens"] / rows[0]["visual_tokens"]
        row["speedup_vs_576"] = base / row["total_macs"]
    return dict(llm=name, text_tokens=text_tokens, boxes=boxes, new_tokens=new_tokens, always_576_macs=base,
                rows=rows)


# ------------------------------------------------------------------------------------------- tiny, measured on CPU


def tiny_model_and_samples(root, num_samples, hidden):
    from mmengine.config import ConfigDict
    from transformers import AutoModelForCausalLM, AutoTokenizer, CLIPImageProcessor

    from mg_llava.dataset import PROMPT_TEMPLATE, ImageViews
    from mg_llava.inference.preprocess import Preprocessor
    from mg_llava.model import AVGLLaVAModel, CLIPVisionEncoder, NoFusion
    from mg_llava.testing.images import SKIMAGE_IMAGES, load_skimage
    from mg_llava.testing.tiny_models import build_clip, build_llm

    clip, llm = osp.join(root, "clip336"), osp.join(root, "llm")
    build_clip(clip, image_size=336)
    build_llm(llm, "vicuna", hidden_size=hidden)
    torch.manual_seed(0)
    model = AVGLLaVAModel(
        llm=ConfigDict(type=AutoModelForCausalLM.from_pretrained, pretrained_model_name_or_path=llm),
        visual_encoder=dict(type=CLIPVisionEncoder, pretrained_model_name_or_path=clip),
        visual_encoder_aux=None, fusion=dict(type=NoFusion), object_features=None,
        use_activation_checkpointing=False).eval()
    tokenizer = AutoTokenizer.from_pretrained(llm)
    views = ImageViews(CLIPImageProcessor.from_pretrained(clip), high_res=336)
    preprocessor = Preprocessor(tokenizer, PROMPT_TEMPLATE.vicuna, views)
    names = sorted(SKIMAGE_IMAGES)
    samples = []
    for i in range(num_samples):
        image = preprocessor.prepare_image(load_skimage(names[i % len(names)]))
        samples.append(preprocessor.sample(QUESTION, (), image, sample_id=str(i)))
    return model, tokenizer, samples


@torch.no_grad()
def generate_fixed(model, tokenizer, samples, new_tokens):
    """Vision + routing + placement, then greedy generation of exactly ``new_tokens`` tokens per sample."""
    from mg_llava.inference.generation import llm_inputs_for_generation, pad_token_id
    from mg_llava.inference.visual_tokens import visual_token_counts

    pad = pad_token_id(tokenizer)
    counts = []
    for sample in samples:  # batch of one: every sample's own length, as in chat
        inputs = llm_inputs_for_generation(model, [sample], pad, torch.device("cpu"))
        counts += visual_token_counts(model, [sample])
        model.llm.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                           pad_token_id=pad)
    return counts


def tiny_cpu(num_samples, new_tokens, repeats, hidden, router_checkpoint=None):
    with tempfile.TemporaryDirectory() as root:
        model, tokenizer, samples = tiny_model_and_samples(root, num_samples, hidden)
        if router_checkpoint:
            state = torch.load(router_checkpoint, map_location="cpu", weights_only=True)
            model.load_state_dict(state.get("state_dict", state), strict=False)
        settings = [(f"always {n}", model.granularity_index(n)) for n in REAL_SIZES] + [("router", None)]
        generate_fixed(model, tokenizer, samples[:1], new_tokens)  # burn-in
        rows = []
        for label, forced in tqdm(settings, desc="tiny CPU generation"):
            model.forced_granularity = forced
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                counts = generate_fixed(model, tokenizer, samples, new_tokens)
                best = min(best, time.perf_counter() - start)
            tokens = [c["visual_tokens"] for c in counts]
            rows.append(dict(setting=label, mean_visual_tokens=sum(tokens) / len(tokens),
                             chosen=[c["granularity"][0] for c in counts], seconds=best,
                             ms_per_sample=1000 * best / len(samples)))
    base = rows[0]
    for row in rows:
        row["visual_token_reduction"] = 1 - row["mean_visual_tokens"] / base["mean_visual_tokens"]
        row["speedup_vs_576"] = base["seconds"] / row["seconds"]
    return dict(samples=num_samples, new_tokens=new_tokens, llm_hidden=hidden, threads=torch.get_num_threads(),
                rows=rows)


def print_tables(real, tiny):
    print(f"\nReal shapes ({real['llm']}, MG-LLaVA vision, {real['boxes']} boxes, {real['text_tokens']} prompt "
          f"tokens, {real['new_tokens']} answer tokens), GMACs per sample:")
    print(f"{'grid':>6}{'visual':>8}{'fewer':>8}{'vision':>9}{'router':>8}{'prefill':>9}{'decode':>9}{'total':>9}"
          f"{'speed-up':>10}")
    for r in real["rows"]:
        print(f"{r['grid_tokens']:>6}{r['visual_tokens']:>8}{r['visual_token_reduction']:>8.1%}"
              f"{r['vision_macs'] / 1e9:>9.0f}{r['router_macs'] / 1e9:>8.0f}{r['llm_prefill_macs'] / 1e9:>9.0f}"
              f"{r['llm_decode_macs'] / 1e9:>9.0f}{r['total_macs'] / 1e9:>9.0f}{r['speedup_vs_576']:>9.2f}x")
    print(f"  always 576 without a router: {real['always_576_macs'] / 1e9:.0f} GMACs")
    print(f"\nTiny on CPU ({tiny['samples']} photos, LLM width {tiny['llm_hidden']}, {tiny['new_tokens']} new tokens, "
          f"{tiny['threads']} threads), best of the repeats:")
    print(f"{'setting':<12}{'visual tokens':>14}{'fewer':>8}{'ms/sample':>11}{'speed-up':>10}")
    for r in tiny["rows"]:
        print(f"{r['setting']:<12}{r['mean_visual_tokens']:>14.1f}{r['visual_token_reduction']:>8.1%}"
              f"{r['ms_per_sample']:>11.1f}{r['speedup_vs_576']:>9.2f}x")
    router = tiny["rows"][-1]
    print(f"  the router chose (grid tokens per sample): {router['chosen']}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text-tokens", type=int, default=64, help="prompt tokens besides the image's (real part)")
    parser.add_argument("--boxes", type=int, default=10, help="object tokens of the image (real part)")
    parser.add_argument("--new-tokens", type=int, default=32, help="answer tokens generated")
    parser.add_argument("--samples", type=int, default=8, help="photographs (tiny part)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny-hidden", type=int, default=64, help="tiny LLM width")
    parser.add_argument("--router-checkpoint", help="a state dict with router.* weights for the tiny model")
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args(argv)
    real = real_shapes(args.text_tokens, args.boxes, args.new_tokens)
    tiny = tiny_cpu(args.samples, args.new_tokens, args.repeats, args.tiny_hidden, args.router_checkpoint)
    print_tables(real, tiny)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(real_shapes=real, tiny_cpu=tiny), f, indent=2)
    return real, tiny


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()

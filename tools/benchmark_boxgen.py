"""Box generation throughput (images/s): decoding, tagging, detection, both together, and the whole pipeline.

    # tiny offline models on this machine
    python tools/benchmark_boxgen.py --out work_dirs/benchmark_boxgen_tiny.json
    # real-size architectures (OWLv2-L/14 at 1008 px, CLIP ViT-L/14 tagger) with random weights, on a GPU
    python tools/benchmark_boxgen.py --real-size --device cuda --dtype bfloat16 --batch-size 16 \
        --out work_dirs/benchmark_boxgen_real.json
    # check the real-size models construct, without memory or time (parameter counts only)
    python tools/benchmark_boxgen.py --real-size --device meta

Random weights give meaningless boxes but the same cost per image as the trained models, except for the number of
boxes kept (NMS and writing are a small share). Real tokenizers cannot be downloaded here, so the real-size text
towers get the tiny character-level tokenizer, padded to OWLv2's 16 tokens like the real one.
"""
import argparse
import io
import json
import os
import os.path as osp
import platform
import sys
import tempfile
import time

import torch
from PIL import Image

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mg_llava.boxgen import BoxGenerator, CLIPTagger, OWLv2Detector  # noqa: E402
from mg_llava.boxgen.images import to_uint8_tensor  # noqa: E402
from mg_llava.testing.images import SKIMAGE_IMAGES, load_skimage  # noqa: E402

# Architectures of google/owlv2-large-patch14-ensemble and openai/clip-vit-large-patch14 (their config.json).
OWLV2_L14 = dict(
    text_config=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                     max_position_embeddings=16, vocab_size=49408),
    vision_config=dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=24,
                       image_size=1008, patch_size=14),
    projection_dim=768,
)
CLIP_L14 = dict(
    text_config=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                     max_position_embeddings=77, vocab_size=49408),
    vision_config=dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=24,
                       image_size=224, patch_size=14),
    projection_dim=768,
)


def real_size_models(tiny_dirs, device):
    """(OWLv2 model, OWLv2 processor, CLIP model, CLIP processor): real architectures, random weights."""
    from transformers import (CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, Owlv2Config,
                              Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor)

    owl_tiny = Owlv2Processor.from_pretrained(tiny_dirs["owlv2"])
    clip_tiny = CLIPProcessor.from_pretrained(tiny_dirs["clip"])
    size = OWLV2_L14["vision_config"]["image_size"]
    owl_processor = Owlv2Processor(image_processor=Owlv2ImageProcessor(size={"height": size, "width": size}),
                                   tokenizer=owl_tiny.tokenizer)
    clip_size = CLIP_L14["vision_config"]["image_size"]
    clip_processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": clip_size},
                                           crop_size={"height": clip_size, "width": clip_size}),
        tokenizer=clip_tiny.tokenizer)
    with torch.device(device):
        owl = Owlv2ForObjectDetection(Owlv2Config(**OWLV2_L14))
        clip = CLIPModel(CLIPConfig(**CLIP_L14))
    return owl, owl_processor, clip, clip_processor


def num_params(model):
    return sum(p.numel() for p in model.parameters())


def test_images(count, width, height):
    """``count`` real photos resized to width x height (LLaVA's COCO-like images are about 640 x 480)."""
    names = list(SKIMAGE_IMAGES)
    images = []
    for k in range(count):
        w, h = (width, height) if k % 2 == 0 else (height, width)  # landscape and portrait
        images.append(load_skimage(names[k % len(names)]).resize((w, h)))
    return images


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def throughput(fn, batches, device, warmup):
    """Images per second of ``fn(batch)`` over ``batches``, after ``warmup`` untimed batches."""
    for batch in batches[:warmup]:
        fn(batch)
    sync(device)
    start = time.perf_counter()
    images = 0
    for batch in batches[warmup:]:
        fn(batch)
        images += len(batch)
    sync(device)
    return images / (time.perf_counter() - start)


def pipeline_throughput(generator, images, batch_size, num_workers, workdir):
    """Whole run_shard (decode in workers, tag, detect, atomic writes) on JPEG files; images/s."""
    from mg_llava.boxgen.pipeline import run_shard

    folder = osp.join(workdir, "images")
    os.makedirs(folder, exist_ok=True)
    rows = []
    for k, image in enumerate(images):
        image.save(osp.join(folder, f"{k}.jpg"), quality=90)
        rows.append(dict(id=str(k), image=f"{k}.jpg"))
    annotation = osp.join(workdir, "data.json")
    with open(annotation, "w") as f:
        json.dump(rows, f)
    start = time.perf_counter()
    run_shard(generator, annotation, osp.join(workdir, "out"), image_folder=folder, batch_size=batch_size,
              num_workers=num_workers, progress=False)
    return len(images) / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real-size", action="store_true", help="OWLv2-L/14 + CLIP-L/14 sizes, random weights")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu, cuda, or meta (construct the models and count parameters only)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-batches", type=int, default=6, help="timed batches per stage")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches first")
    parser.add_argument("--image-size", default="640x480", help="WxH of the test photos")
    parser.add_argument("--top-k", type=int, default=10, help="tags per image (RAM++ gives about this many)")
    parser.add_argument("--vocabulary", default="lvis", help="the CLIP tagger's vocabulary")
    parser.add_argument("--num-workers", type=int, default=2, help="decoding workers in the pipeline stage")
    parser.add_argument("--no-pipeline", action="store_true", help="skip the whole-pipeline stage")
    parser.add_argument("--out", default="work_dirs/benchmark_boxgen.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="benchmark_boxgen_") as workdir:
        result = run(args, workdir)
    _write(args.out, result)
    return result


def run(args, workdir):
    from mg_llava.testing.tiny_models import build_clip, build_owlv2

    tiny = {"clip": build_clip(osp.join(workdir, "clip")), "owlv2": build_owlv2(osp.join(workdir, "owlv2"))}
    result = dict(real_size=args.real_size, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                  torch=torch.__version__, machine=platform.processor() or platform.machine(),
                  cpu_threads=torch.get_num_threads())
    if torch.device(args.device).type == "cuda":
        result["gpu"] = torch.cuda.get_device_name()

    if args.real_size:
        owl, owl_processor, clip, clip_processor = real_size_models(tiny, args.device)
        result.update(owlv2_params=num_params(owl), clip_params=num_params(clip),
                      owlv2_input=OWLV2_L14["vision_config"]["image_size"])
        print(f"OWLv2-L/14: {num_params(owl) / 1e6:.1f} M parameters, CLIP-L/14: {num_params(clip) / 1e6:.1f} M")
        if args.device == "meta":
            return result
        tagger = CLIPTagger(clip, processor=clip_processor, vocabulary=args.vocabulary, top_k=args.top_k, min_prob=0.0,
                            device=args.device, dtype=args.dtype)
        detector = OWLv2Detector(owl, processor=owl_processor, device=args.device, dtype=args.dtype)
    else:
        if args.device == "meta":
            raise SystemExit("--device meta is for --real-size")
        tagger = CLIPTagger(tiny["clip"], vocabulary=args.vocabulary, top_k=args.top_k, min_prob=0.0, device=args.device,
                            dtype=args.dtype)
        detector = OWLv2Detector(tiny["owlv2"], device=args.device, dtype=args.dtype)
    generator = BoxGenerator(tagger, detector)

    width, height = map(int, args.image_size.split("x"))
    count = args.batch_size * (args.num_batches + args.warmup)
    photos = test_images(count, width, height)
    tensors = [to_uint8_tensor(p) for p in photos]
    batches = [tensors[i:i + args.batch_size] for i in range(0, count, args.batch_size)]
    jpegs = []
    for p in photos:
        buf = io.BytesIO()
        p.save(buf, format="JPEG", quality=90)
        jpegs.append(buf.getvalue())
    jpeg_batches = [jpegs[i:i + args.batch_size] for i in range(0, count, args.batch_size)]
    tags = {id(b): generator.tagger.tag(b) for b in batches}

    stages = {
        "decode (1 CPU process)": throughput(
            lambda b: [to_uint8_tensor(Image.open(io.BytesIO(j)).convert("RGB")) for j in b], jpeg_batches, "cpu",
            args.warmup),
        "tagger (CLIP)": throughput(generator.tagger.tag, batches, args.device, args.warmup),
        "detector (OWLv2)": throughput(lambda b: detector.detect(b, tags[id(b)]), batches, args.device,
                                       args.warmup),
        "tagger + detector": throughput(generator.generate, batches, args.device, args.warmup),
    }
    if not args.no_pipeline:
        stages[f"pipeline ({args.num_workers} decode workers, writes)"] = pipeline_throughput(
            generator, photos, args.batch_size, args.num_workers, workdir)
    result["images_per_s"] = {k: round(v, 2) for k, v in stages.items()}
    result["image_size"] = args.image_size
    result["tags_per_image"] = args.top_k

    title = "real-size (random weights)" if args.real_size else "tiny"
    print(f"\nbox generation, {title}, {args.device} {args.dtype}, batch {args.batch_size}, {args.image_size} photos")
    print(f"{'stage':<44}{'images/s':>10}{'ms/image':>10}")
    for name, value in stages.items():
        print(f"{name:<44}{value:>10.3f}{1000 / value:>10.1f}")
    return result


def _write(path, result):
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""Sample builders shared by the data tests (a uniquely named module: tests/ has no packages)."""
import json


def human(value):
    return {"from": "human", "value": value}


def gpt(value):
    return {"from": "gpt", "value": value}


def image_sample(sample_id, image, question="<image>\nWhat is in the image?", answer="A cat."):
    return {"id": sample_id, "image": image, "conversations": [human(question), gpt(answer)]}


def text_sample(sample_id, question="Say yes.", answer="Yes."):
    return {"id": sample_id, "conversations": [human(question), gpt(answer)]}


def write_jsonl(path, samples):
    with open(path, "w") as f:
        for sample in samples:
            f.write(sample if isinstance(sample, str) else json.dumps(sample))
            f.write("\n")
    return str(path)


def write_boxes(path, entries):
    with open(path, "w") as f:
        json.dump(entries, f)
    return str(path)

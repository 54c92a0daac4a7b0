"""Classify the digits test set on the Kneron provider and on the CPU; compare them.

    KP_VIRTUAL_DEVICES=KL520 python examples/classify.py          # virtual KL520 dongle
    python examples/classify.py --device 13                       # a real KL520 at port id 13

The Kneron provider runs ``digits/digits_cnn.nef`` (a virtual-dongle-only twin built with
``kp-runtime build-nef``: the virtual NPU computes the companion ``digits_cnn.onnx`` on int8
inputs and quantises its outputs with the NEF's parameters); the CPU provider runs the ONNX.
The script prints each provider's accuracy and their top-1 agreement.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import numpy as np

import kp_runtime as ort

DIGITS = Path(__file__).resolve().parent / "digits"


def load_digits_data():
    spec = importlib.util.spec_from_file_location("digits_data", DIGITS / "digits_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def classify(session: ort.InferenceSession, feeds: np.ndarray) -> tuple[np.ndarray, float]:
    """Top-1 class of every feed (pipelined with ``run_many``) and the seconds it took."""
    start = time.perf_counter()
    outputs = session.run_many({"input": x} for x in feeds)
    predictions = np.array([int(np.argmax(logits)) for (logits,) in outputs])
    return predictions, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto",
                        help="Kneron provider option 'device' (default auto: the first dongle, "
                             "or the virtual ones of KP_VIRTUAL_DEVICES)")
    parser.add_argument("--limit", type=int, default=0, help="classify only the first N images")
    args = parser.parse_args(argv)

    digits = load_digits_data()
    images, labels = digits.load_test_set()
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    feeds = digits.to_model_input(images)

    runs = {}
    for label, model, providers in (
        ("kneron", DIGITS / "digits_cnn.nef", [("kneron", {"device": args.device})]),
        ("cpu", DIGITS / "digits_cnn.onnx", ["cpu"]),
    ):
        with ort.InferenceSession(str(model), providers=providers) as session:
            predictions, seconds = classify(session, feeds)
            device = session.get_providers()[0]
        runs[label] = predictions
        accuracy = float(np.mean(predictions == labels))
        print(f"{label:7s} {device:26s} accuracy {accuracy:.2%} "
              f"({int(np.sum(predictions == labels))}/{len(labels)}) in {seconds:.2f} s")
    agreement = float(np.mean(runs["kneron"] == runs["cpu"]))
    print(f"top-1 agreement kneron vs cpu: {agreement:.2%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

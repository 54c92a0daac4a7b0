"""A digits classifier written for onnxruntime (the "before" of the port).

    python classify_ort.py ../digits/digits_cnn.onnx
"""

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

PROVIDERS = ["CPUExecutionProvider"]


def load_test_set(folder):
    data = np.load(Path(folder) / "digits_test.npz")
    images, labels = data["images"], data["labels"]
    x = (images.astype(np.float32) - 128.0) / 256.0  # the model's input encoding
    return x.reshape(-1, 1, 1, 8, 8), labels


def main(model_path):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model_path, sess_options=options, providers=PROVIDERS)
    inp = session.get_inputs()[0]
    out = session.get_outputs()[0]
    print(f"providers: {session.get_providers()}")
    print(f"input {inp.name} {inp.type} {inp.shape} -> output {out.name} {out.type} {out.shape}")
    x, labels = load_test_set(Path(__file__).resolve().parent.parent / "digits")
    correct = 0
    for sample, label in zip(x, labels):
        (logits,) = session.run([out.name], {inp.name: sample})
        correct += int(np.argmax(logits) == label)
    try:
        session.run(None, {inp.name: x[0].astype(np.float64)})
    except Exception as exc:  # onnxruntime's InvalidArgument
        print(f"wrong dtype rejected: {type(exc).__name__}")
    print(f"accuracy {correct / len(labels):.4f} ({correct}/{len(labels)})")


if __name__ == "__main__":
    main(sys.argv[1])

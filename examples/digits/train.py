"""Train the digits example CNN with numpy and export it as ONNX.

Developer tool, run offline: it needs scikit-learn (for ``load_digits`` and
``train_test_split``), which is NOT a kp-runtime dependency. Its outputs are
committed, so nothing else in the project needs scikit-learn::

    python examples/digits/train.py            # rewrites the files beside this script
    python examples/digits/train.py --out-dir /tmp/digits

Writes ``digits_cnn.onnx``, ``digits_test.npz`` (test split as uint8 images +
int64 labels) and ``calibration.npz`` (100 encoded training inputs for NEF
calibration). Deterministic: fixed split, fixed seed, float64 numpy training
(under 10 s on 2 CPU cores).

Model (NCHW, batch 1 as Kneron NPUs run it)::

    input [1,1,8,8] -> Conv(1->8, 3x3, pad 1) -> Relu -> MaxPool 2x2
      -> Conv(8->16, 3x3, pad 1) -> Relu -> Flatten -> Gemm(256->10) -> logits [1,10]

Input encoding (see ``digits_data.py``): digits pixel x in 0..16 ->
u = round(x * 255 / 16) as uint8 -> u/256 - 0.5, which is Kneron's KNERON
normalisation (p - 128, radix 8), so RAW8 images with device pre-processing
and float tensors with bypass pre-processing feed the NPU the same values.

Data: the UCI ML hand-written digits (CC BY 4.0), as shipped by scikit-learn.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import digits_data  # noqa: E402

log = logging.getLogger("digits.train")

SEED = 0
TEST_SIZE = 0.2
EPOCHS = 60
BATCH = 16
LEARNING_RATE = 3e-3
MAX_SHIFT = 1  # augmentation: random translation by up to one pixel each way
CALIBRATION_PER_CLASS = 10
C1, C2 = 8, 16
OPSET = 13
IR_VERSION = 7  # the IR version that goes with opset 13; read by onnx >= 1.15, onnxruntime >= 1.17

Array = np.ndarray
Params = dict[str, np.ndarray]


# ---------------------------------------------------------------- numpy layers


def im2col3x3(x: Array) -> Array:
    """``[N, C, H, W]`` -> ``[N*H*W, C*9]`` patches of a 3x3, pad 1, stride 1 convolution."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))  # N,C,H,W,3,3
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n * h * w, c * 9)


def col2im3x3(cols: Array, shape: tuple[int, int, int, int]) -> Array:
    """Adjoint of :func:`im2col3x3`: scatter-add patch gradients back to ``[N, C, H, W]``."""
    n, c, h, w = shape
    g = cols.reshape(n, h, w, c, 3, 3).transpose(0, 3, 4, 5, 1, 2)  # N,C,3,3,H,W
    out = np.zeros((n, c, h + 2, w + 2), dtype=cols.dtype)
    for i in range(3):
        for j in range(3):
            out[:, :, i : i + h, j : j + w] += g[:, :, i, j]
    return out[:, :, 1:-1, 1:-1]


def conv_forward(x: Array, weight: Array, bias: Array) -> tuple[Array, Array]:
    n, _, h, w = x.shape
    cols = im2col3x3(x)
    out = cols @ weight.reshape(weight.shape[0], -1).T + bias
    return out.reshape(n, h, w, -1).transpose(0, 3, 1, 2), cols


def conv_backward(
    dout: Array, cols: Array, weight: Array, x_shape: tuple[int, ...] | None
) -> tuple[Array, Array, Array | None]:
    f = weight.shape[0]
    d = dout.transpose(0, 2, 3, 1).reshape(-1, f)
    dw = (d.T @ cols).reshape(weight.shape)
    db = d.sum(axis=0)
    dx = None if x_shape is None else col2im3x3(d @ weight.reshape(f, -1), x_shape)
    return dw, db, dx


def maxpool2_forward(x: Array) -> tuple[Array, Array]:
    n, c, h, w = x.shape
    win = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5)
    win = win.reshape(n, c, h // 2, w // 2, 4)
    idx = win.argmax(axis=-1)
    return np.take_along_axis(win, idx[..., None], axis=-1)[..., 0], idx


def maxpool2_backward(dout: Array, idx: Array) -> Array:
    n, c, h2, w2 = dout.shape
    g = np.zeros((n, c, h2, w2, 4), dtype=dout.dtype)
    np.put_along_axis(g, idx[..., None], dout[..., None], axis=-1)
    return g.reshape(n, c, h2, w2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h2 * 2, w2 * 2)


# ---------------------------------------------------------------- model


def init_params(rng: np.random.Generator) -> Params:
    """He-normal weights, zero biases."""

    def he(shape: tuple[int, ...], fan_in: int) -> Array:
        return rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)

    flat = C2 * 4 * 4
    return {
        "conv1.weight": he((C1, 1, 3, 3), 9),
        "conv1.bias": np.zeros(C1),
        "conv2.weight": he((C2, C1, 3, 3), C1 * 9),
        "conv2.bias": np.zeros(C2),
        "fc.weight": he((10, flat), flat),
        "fc.bias": np.zeros(10),
    }


def forward(p: Params, x: Array, keep: bool = False):
    """Logits ``[N, 10]`` for inputs ``[N, 1, 8, 8]``; with ``keep`` also the backward cache."""
    z1, cols1 = conv_forward(x, p["conv1.weight"], p["conv1.bias"])
    a1 = np.maximum(z1, 0)
    m1, idx1 = maxpool2_forward(a1)
    z2, cols2 = conv_forward(m1, p["conv2.weight"], p["conv2.bias"])
    a2 = np.maximum(z2, 0)
    flat = a2.reshape(len(x), -1)  # C-order flatten, as ONNX Flatten(axis=1) on NCHW
    logits = flat @ p["fc.weight"].T + p["fc.bias"]
    if not keep:
        return logits
    return logits, (cols1, z1, idx1, m1.shape, cols2, z2, flat)


def loss_and_grads(p: Params, x: Array, y: Array) -> tuple[float, Params]:
    logits, (cols1, z1, idx1, m1_shape, cols2, z2, flat) = forward(p, x, keep=True)
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = len(y)
    loss = -logp[np.arange(n), y].mean()
    dlogits = np.exp(logp)
    dlogits[np.arange(n), y] -= 1.0
    dlogits /= n
    g = {"fc.weight": dlogits.T @ flat, "fc.bias": dlogits.sum(axis=0)}
    da2 = (dlogits @ p["fc.weight"]).reshape(z2.shape) * (z2 > 0)
    g["conv2.weight"], g["conv2.bias"], dm1 = conv_backward(da2, cols2, p["conv2.weight"], m1_shape)
    da1 = maxpool2_backward(dm1, idx1) * (z1 > 0)
    g["conv1.weight"], g["conv1.bias"], _ = conv_backward(da1, cols1, p["conv1.weight"], None)
    return float(loss), g


def random_shift(x: Array, rng: np.random.Generator) -> Array:
    """Translate each ``[1, 8, 8]`` input by up to ``MAX_SHIFT`` pixels, filling with background."""
    n, _, h, w = x.shape
    k = MAX_SHIFT
    # blank paper: u = 0
    background = float(digits_data.to_model_input(np.zeros((h, w), np.uint8)).flat[0])
    xp = np.pad(x, ((0, 0), (0, 0), (k, k), (k, k)), constant_values=background)
    win = np.lib.stride_tricks.sliding_window_view(xp, (h, w), axis=(2, 3))  # N,C,2k+1,2k+1,H,W
    dy, dx = rng.integers(0, 2 * k + 1, size=(2, n))
    return win[np.arange(n), :, dy, dx]


def train(x: Array, y: Array, seed: int = SEED) -> Params:
    """Adam on softmax cross-entropy with shift augmentation; float64, fixed seed and order."""
    rng = np.random.default_rng(seed)
    p = init_params(rng)
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(v) for k, v in p.items()}
    beta1, beta2, eps, step = 0.9, 0.999, 1e-8, 0
    for epoch in range(EPOCHS):
        lr = LEARNING_RATE * 0.5 * (1 + np.cos(np.pi * epoch / EPOCHS))  # cosine decay
        order = rng.permutation(len(x))
        total = 0.0
        for start in range(0, len(x), BATCH):
            batch = order[start : start + BATCH]
            loss, g = loss_and_grads(p, random_shift(x[batch], rng), y[batch])
            total += loss * len(batch)
            step += 1
            for k in p:
                m[k] = beta1 * m[k] + (1 - beta1) * g[k]
                v[k] = beta2 * v[k] + (1 - beta2) * g[k] ** 2
                mhat = m[k] / (1 - beta1**step)
                vhat = v[k] / (1 - beta2**step)
                p[k] -= lr * mhat / (np.sqrt(vhat) + eps)
        log.info("epoch %2d  lr %.5f  loss %.4f", epoch + 1, lr, total / len(x))
    return p


def accuracy(p: Params, x: Array, y: Array) -> float:
    return float((forward(p, x).argmax(axis=1) == y).mean())


# ---------------------------------------------------------------- export


def export_onnx(p: Params, test_accuracy: float, n_train: int, n_test: int):
    """The trained parameters as an ONNX model (float32, opset 13, batch fixed at 1)."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(v.astype(np.float32), name=k) for k, v in p.items()]
    nodes = [
        helper.make_node("Conv", ["input", "conv1.weight", "conv1.bias"], ["conv1"], name="conv1",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("Relu", ["conv1"], ["relu1"], name="relu1"),
        helper.make_node("MaxPool", ["relu1"], ["pool1"], name="pool1",
                         kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["pool1", "conv2.weight", "conv2.bias"], ["conv2"], name="conv2",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("Relu", ["conv2"], ["relu2"], name="relu2"),
        helper.make_node("Flatten", ["relu2"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], [digits_data.OUTPUT_NAME],
                         name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "digits_cnn",
        [helper.make_tensor_value_info(
            digits_data.INPUT_NAME, TensorProto.FLOAT, list(digits_data.INPUT_SHAPE))],
        [helper.make_tensor_value_info(
            digits_data.OUTPUT_NAME, TensorProto.FLOAT, [1, digits_data.NUM_CLASSES])],
        initializer=inits,
        doc_string="8x8 hand-written digit classifier; input u/256 - 0.5 (u: 8-bit grey); logits.",
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="kp-runtime examples/digits/train.py",
        producer_version="1",
        doc_string=(
            "Small CNN trained with numpy on scikit-learn's digits "
            "(UCI ML hand-written digits, CC BY 4.0). "
            "Input [1,1,8,8] float32 = u/256 - 0.5 where u = round(x*255/16) is the 8-bit grey "
            "level of a digits pixel x in 0..16 (Kneron KNERON normalisation with radix 8). "
            "Output: logits [1,10]."
        ),
    )
    model.ir_version = IR_VERSION
    model.model_version = 1
    helper.set_model_props(
        model,
        {
            "dataset": "sklearn.datasets.load_digits (UCI ML hand-written digits, CC BY 4.0)",
            "split": f"train_test_split(test_size={TEST_SIZE}, random_state={SEED}, stratify=y): "
            f"{n_train} train / {n_test} test",
            "test_accuracy": f"{test_accuracy:.4f}",
            "input_encoding": "u/256 - 0.5, u = (255*x + 8) // 16 uint8 "
            "(KNERON normalisation, radix 8)",
            "classes": "0,1,2,3,4,5,6,7,8,9",
        },
    )
    return model


def write_npz(path: Path, **arrays: Array) -> None:
    """Like ``np.savez_compressed`` but byte-for-byte reproducible (fixed zip timestamps)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


def calibration_indices(y: Array, per_class: int, seed: int) -> Array:
    """``per_class`` training samples of each class, chosen with a fixed seed, in index order."""
    rng = np.random.default_rng(seed)
    picks = [
        rng.choice(np.flatnonzero(y == c), per_class, replace=False)
        for c in range(digits_data.NUM_CLASSES)
    ]
    return np.sort(np.concatenate(picks))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out-dir", type=Path, default=digits_data.HERE, help="where to write the files"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import onnx
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits_data.encode_pixels(digits.data)
    labels = digits.target.astype(np.int64)
    img_tr, img_te, y_tr, y_te = train_test_split(
        images, labels, test_size=TEST_SIZE, random_state=SEED, stratify=labels
    )
    x_tr = digits_data.to_model_input(img_tr)[:, 0].astype(np.float64)  # [N,1,8,8]
    x_te = digits_data.to_model_input(img_te)[:, 0].astype(np.float64)

    params = train(x_tr, y_tr)
    acc_tr, acc_te = accuracy(params, x_tr, y_tr), accuracy(params, x_te, y_te)
    log.info("train accuracy %.4f  test accuracy %.4f", acc_tr, acc_te)

    model = export_onnx(params, acc_te, len(y_tr), len(y_te))
    onnx.checker.check_model(model, full_check=True)
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / digits_data.MODEL_PATH.name).write_bytes(model.SerializeToString())
    write_npz(out / digits_data.TEST_SET_PATH.name, images=img_te, labels=y_te)
    calib_idx = calibration_indices(y_tr, CALIBRATION_PER_CLASS, SEED)
    calib = digits_data.to_model_input(img_tr[calib_idx])
    write_npz(out / digits_data.CALIBRATION_PATH.name, **{digits_data.INPUT_NAME: calib})
    log.info("wrote %s", ", ".join(str(out / f.name) for f in (
        digits_data.MODEL_PATH, digits_data.TEST_SET_PATH, digits_data.CALIBRATION_PATH)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The one input encoding of the digits example model, and loaders for its data files.

Import it as a module (``examples/digits`` on ``sys.path``) or by path
(``importlib.util.spec_from_file_location``); it needs numpy only, never
scikit-learn, so examples and tests run on the committed files alone.

Encoding (shared by training, examples, tests and the NEF calibration set):

1. A digits pixel ``x`` (an integer 0..16) becomes an 8-bit grey level
   ``u = (255 * x + 8) // 16``, i.e. ``x * 255 / 16`` rounded half up
   (the only tie, x = 8 -> 127.5, gives 128, as ``np.round`` does too).
   ``u`` is what a device receives as a RAW8 image.
2. The model input is ``u / 256 - 0.5`` as float32, shape ``[1, 1, 8, 8]``.

Step 2 is exactly Kneron's ``KP_NORMALIZE_KNERON`` pre-processing
(the hardware subtracts 128, giving the int8 ``u - 128``) read with an input
radix of 8 (int8 / 2**8). So a uint8 image sent for on-device pre-processing
and the float tensor sent with bypass pre-processing give the same NPU input,
bit for bit: every value is a multiple of 1/256 in [-0.5, 0.49609375].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MODEL_PATH = HERE / "digits_cnn.onnx"
TEST_SET_PATH = HERE / "digits_test.npz"
CALIBRATION_PATH = HERE / "calibration.npz"

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
INPUT_SHAPE = (1, 1, 8, 8)
NUM_CLASSES = 10
IMAGE_SIDE = 8
DIGITS_MAX = 16
# Kneron KNERON normalisation: the hardware subtracts 128; radix 8 means int8 / 2**8.
KNERON_OFFSET = 128
INPUT_RADIX = 8


def _check_images(images: np.ndarray, what: str, dtype_kind: str, expected: str) -> np.ndarray:
    arr = np.asarray(images)
    if arr.dtype.kind not in dtype_kind:
        raise TypeError(f"{what}: expected {expected}, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise ValueError(
            f"{what}: expected shape [N, 8, 8] or [8, 8], got {list(np.shape(images))}"
        )
    return arr


def encode_pixels(pixels: np.ndarray) -> np.ndarray:
    """Digits pixel values (integers 0..16, any int/float dtype) -> uint8 grey levels ``u``.

    Accepts ``[N, 64]`` (scikit-learn's ``data``), ``[N, 8, 8]`` or ``[8, 8]``;
    returns ``[N, 8, 8]`` uint8.
    """
    arr = np.asarray(pixels)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"pixels: expected a numeric array of integers 0..16, got {arr.dtype}")
    if arr.ndim == 2 and arr.shape[1] == IMAGE_SIDE * IMAGE_SIDE:
        arr = arr.reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    arr = _check_images(arr, "pixels", "iuf", "integers 0..16")
    if arr.size and (arr.min() < 0 or arr.max() > DIGITS_MAX or np.any(arr != np.round(arr))):
        raise ValueError(
            f"pixels: expected integers 0..{DIGITS_MAX}, got values in [{arr.min()}, {arr.max()}]"
        )
    x = arr.astype(np.int64)
    return ((255 * x + DIGITS_MAX // 2) // DIGITS_MAX).astype(np.uint8)


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 grey images ``[N, 8, 8]`` (or one ``[8, 8]``) -> float32 ``[N, 1, 1, 8, 8]``.

    ``result[i]`` is a feed for the model's ``input`` of shape ``[1, 1, 8, 8]``.
    """
    u = _check_images(images, "images", "u", "uint8 grey levels (RAW8)")
    if u.dtype != np.uint8:
        raise TypeError(f"images: expected dtype uint8 (RAW8 grey levels), got {u.dtype}")
    # (u - 128) / 256 in float32 is exact: the int8 value the NPU sees, read with radix 8.
    q = u.astype(np.int16) - KNERON_OFFSET
    x = q.astype(np.float32) / np.float32(2**INPUT_RADIX)
    return x.reshape(-1, *INPUT_SHAPE)


def from_model_input(tensor: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_model_input`: float model inputs -> uint8 images ``[N, 8, 8]``.

    Raises ``ValueError`` if a value is not exactly ``u / 256 - 0.5`` for an
    8-bit ``u`` (such an input cannot be sent as a RAW8 image).
    """
    arr = np.asarray(tensor)
    if arr.dtype.kind != "f":
        raise TypeError(f"tensor: expected a float array (model input), got dtype {arr.dtype}")
    if arr.shape[-2:] != (IMAGE_SIDE, IMAGE_SIDE) or arr.size % (IMAGE_SIDE * IMAGE_SIDE):
        raise ValueError(f"tensor: expected [..., 8, 8] model input, got shape {list(arr.shape)}")
    flat = arr.astype(np.float64).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    scaled = flat * 2**INPUT_RADIX + KNERON_OFFSET
    u = np.round(scaled)
    if not np.array_equal(u, scaled) or (u.size and (u.min() < 0 or u.max() > 255)):
        raise ValueError("tensor: values are not all u/256 - 0.5 with u an integer 0..255")
    return u.astype(np.uint8)


def _load_npz(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: data file not found (examples/digits/train.py rebuilds it)"
        )
    with np.load(path, allow_pickle=False) as data:
        missing = [n for n in names if n not in data.files]
        if missing:
            raise ValueError(
                f"{path}: expected arrays {list(names)}, missing {missing} (has {data.files})"
            )
        return {n: data[n] for n in names}


def load_test_set(path: str | Path = TEST_SET_PATH) -> tuple[np.ndarray, np.ndarray]:
    """The held-out test split: ``(images uint8 [N, 8, 8], labels int64 [N])``."""
    data = _load_npz(Path(path), ("images", "labels"))
    images, labels = data["images"], data["labels"]
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise ValueError(
            f"{path}: 'images' must be uint8 [N, 8, 8], got {images.dtype} {list(images.shape)}"
        )
    if labels.dtype != np.int64 or labels.shape != images.shape[:1]:
        raise ValueError(
            f"{path}: 'labels' must be int64 [{images.shape[0]}], "
            f"got {labels.dtype} {list(labels.shape)}"
        )
    return images, labels


def load_calibration(path: str | Path = CALIBRATION_PATH) -> np.ndarray:
    """Calibration inputs for NEF building: float32 ``[S, 1, 1, 8, 8]``, already encoded."""
    arr = _load_npz(Path(path), (INPUT_NAME,))[INPUT_NAME]
    if arr.dtype != np.float32 or arr.shape[1:] != INPUT_SHAPE:
        raise ValueError(
            f"{path}: '{INPUT_NAME}' must be float32 [S, 1, 1, 8, 8], "
            f"got {arr.dtype} {list(arr.shape)}"
        )
    return arr

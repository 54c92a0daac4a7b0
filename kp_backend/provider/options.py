"""Provider options of the Kneron execution provider: parsing, defaults, documentation.

Options arrive as onnxruntime passes them, a ``dict`` of strings (``InferenceSession``
stringifies keys and values); Python values (``True``, ``5000``, ``[1, 2]``) are accepted
too when the provider is called directly. Every key is documented in :data:`OPTION_DOCS`
(the table of ``docs/kneron_provider.md`` is the same text); an unknown key or a bad value
raises :class:`~kp_runtime.errors.InvalidArgument` naming the key and what was expected.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from kp_runtime.errors import InvalidArgument

from kp_backend.layouts.params import ChannelOrdering
from kp_backend.protocol.constants import ImageFormat, NormalizeMode, PaddingMode, ResizeMode

__all__ = ["KneronOptions", "DeviceSpec", "OPTION_DOCS", "parse_options", "options_table",
           "DEFAULT_TIMEOUT_MS",
           "INPUT_MODES", "OUTPUT_ORDERINGS"]

#: Default USB transfer / result timeout. Kneron's 0 (= forever) is never the default here:
#: nothing may hang forever by default.
DEFAULT_TIMEOUT_MS = 10_000

INPUT_MODES = ("auto", "float", "image")
#: ``onnx``: ONNX order and shape; the others are Kneron's ``retrieve_float_node`` shapes.
OUTPUT_ORDERINGS = ("onnx", "CHW", "HCW", "HWC", "DEFAULT")

OPTION_DOCS: dict[str, tuple[str, str]] = {
    # key: (default as shown to users, description)
    "device": ("auto", "Which dongle(s) run the model. `auto`: the first dongle of the NEF's "
               "chip on the bus (the virtual ones of `KP_VIRTUAL_DEVICES` when that is set); "
               "`virtual`: a virtual dongle of the NEF's chip; `virtual:SPEC`: the virtual "
               "dongles of an emulator spec (`virtual:KL720`, `virtual:2xKL520`, "
               "`virtual:KL520:fast`), shared process-wide per spec; a USB port id (`13`) or a "
               "list of port ids (`[13, 17]`, `13,17`). Several dongles are used round-robin."),
    "model_id": ("", "The NEF model id the session runs. Required when the NEF holds several "
                 "models (the error lists the ids and their node shapes)."),
    "onnx": ("", "Path of the companion ONNX model (names, shapes, dtypes; the virtual dongle's "
             "twin). Default: `model.onnx` beside `model.nef` when it exists."),
    "timeout_ms": (str(DEFAULT_TIMEOUT_MS), "Timeout of every USB transfer and of each result, "
                   "in ms (> 0). A request whose result does not arrive in time fails with "
                   "`DeviceTimeout` naming the dongle."),
    "in_flight": ("device", "Requests kept outstanding per dongle by `submit`/`run_many` "
                  "(>= 1). Default: what the dongle's FIFO queues hold (input + result "
                  "buffers, 6 after a normal model load)."),
    "frame_drop": ("false", "Let the dongle drop the oldest waiting request when its input "
                   "queue is full (control 0x83). A dropped request fails with "
                   "`DeviceError` '... dropped by the device (frame_drop)'."),
    "input_mode": ("auto", "`float`: float32 tensors in the ONNX input shape, quantised and "
                   "laid out on the host, sent with bypass pre-processing (job 17). `image`: "
                   "uint8 images (HW, HWC or NHWC) pre-processed by the dongle (job 10); "
                   "`get_inputs()` then reports `tensor(uint8)`. `auto`: as `float` for "
                   "`get_inputs()`; a uint8 feed given to the provider session is sent as an "
                   "image."),
    "image_format": ("auto", "Image format of uint8 inputs: `auto` (1 channel: RAW8; 3 "
                     "channels: RGB, sent as RGBA8888 with alpha 0; 4 channels: RGBA8888), or "
                     "`RAW8`, `RGBA8888`, `RGB565`, `YUYV`, `YCBCR422_*` (2-byte formats take "
                     "an H x W x 2 uint8 array)."),
    "resize": ("true", "Image inputs: let the dongle resize the image to the model input "
               "(`true`/`false`)."),
    "padding": ("corner", "Image inputs with `resize`: `corner` (keep aspect ratio, pad "
                "right/bottom), `symmetric` (keep aspect ratio, centred) or `none` (stretch). "
                "Without `resize` it must be `none`."),
    "normalize": ("auto", "Image inputs: the dongle's normalisation, `kneron` (p/256 - 0.5, "
                  "input radix 8), `tensorflow` (p/128 - 1, radix 7), `yolo` (p/256, radix 7), "
                  "`customized_default`, `customized_sub128`, `customized_div2`, "
                  "`customized_sub128_div2`, `disable`. `auto`: `kneron` for input radix 8, "
                  "`tensorflow` for radix 7."),
    "channel_ordering": ("onnx", "Output shapes: `onnx` (the ONNX output shape, e.g. [1, 1000] "
                         "from an NPU [1, 1000, 1, 1]) or Kneron's float-node orderings `CHW` "
                         "(1,C,H,W), `HCW` (1,H,C,W), `HWC` (1,H,W,C), `DEFAULT` (the chip's "
                         "native one)."),
    "allow_reload": ("false", "Replace a different NEF already loaded on the chosen dongle(s) "
                     "by other open sessions (their later runs fail with a clear error). "
                     "Without it that is an `EPFail` naming the sessions' NEF."),
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_PADDING = {"corner": PaddingMode.KP_PADDING_CORNER,
            "symmetric": PaddingMode.KP_PADDING_SYMMETRIC,
            "none": PaddingMode.KP_PADDING_DISABLE, "disable": PaddingMode.KP_PADDING_DISABLE}
_NORMALIZE = {name[len("KP_NORMALIZE_"):].lower().replace("tensor_flow", "tensorflow"): member
              for name, member in NormalizeMode.__members__.items()}


@dataclass(frozen=True)
class DeviceSpec:
    """Parsed ``device`` option: ``kind`` is ``auto``, ``virtual`` or ``ports``.

    ``virtual_spec`` is the virtual-dongle spec after ``virtual:`` (the emulator's grammar,
    e.g. ``2xKL520:fast``); empty means one dongle of the NEF's chip."""

    kind: str
    virtual_spec: str = ""
    port_ids: tuple[int, ...] = ()

    def describe(self) -> str:
        if self.kind == "virtual":
            return "virtual:" + (self.virtual_spec or "<NEF chip>")
        if self.kind == "ports":
            return "port ids " + ", ".join(str(p) for p in self.port_ids)
        return "auto"


@dataclass(frozen=True)
class KneronOptions:
    """Every provider option, parsed and with its default (see :data:`OPTION_DOCS`)."""

    device: DeviceSpec = field(default_factory=lambda: DeviceSpec("auto"))
    model_id: int | None = None
    onnx: str | None = None
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    in_flight: int | None = None
    frame_drop: bool = False
    input_mode: str = "auto"
    image_format: ImageFormat | None = None  # None = auto
    resize: bool = True
    padding: PaddingMode = PaddingMode.KP_PADDING_CORNER
    normalize: NormalizeMode | None = None  # None = auto (from the input radix)
    channel_ordering: str = "onnx"
    allow_reload: bool = False

    @property
    def resize_mode(self) -> ResizeMode:
        return ResizeMode.KP_RESIZE_ENABLE if self.resize else ResizeMode.KP_RESIZE_DISABLE

    @property
    def kneron_ordering(self) -> ChannelOrdering:
        """The ordering asked of the decoder (``onnx`` decodes as CHW, then maps)."""
        if self.channel_ordering == "onnx":
            return ChannelOrdering.CHW
        return ChannelOrdering[self.channel_ordering]


def _bad(key: str, value: Any, expected: str) -> InvalidArgument:
    return InvalidArgument(f"KneronExecutionProvider option {key}={value!r} is invalid; "
                           f"expected {expected}")


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else str(value)


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = _text(value).lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _bad(key, value, "true or false")


def _int(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool):
        raise _bad(key, value, f"an integer >= {minimum}")
    try:
        number = int(_text(value), 0) if not isinstance(value, int) else value
    except ValueError:
        raise _bad(key, value, f"an integer >= {minimum}") from None
    if number < minimum:
        raise _bad(key, value, f"an integer >= {minimum}")
    return number


def _port_list(value: Any) -> tuple[int, ...] | None:
    """``13``, ``"13"``, ``[13, 17]``, ``"[13, 17]"``, ``"13,17"`` -> port ids; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return (value,)
    if isinstance(value, (list, tuple)):
        items = list(value)
    else:
        text = _text(value)
        if text.startswith(("[", "(")):
            try:
                parsed = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                return None
            items = list(parsed) if isinstance(parsed, (list, tuple)) else [parsed]
        else:
            items = text.split(",")
    ports = []
    for item in items:
        try:
            port = int(_text(item), 0) if not isinstance(item, int) else item
        except ValueError:
            return None
        if isinstance(item, bool) or port < 0:
            return None
        ports.append(port)
    return tuple(ports) if ports else None


def _device(value: Any) -> DeviceSpec:
    expected = ("'auto', 'virtual', 'virtual:SPEC' (a virtual-dongle spec such as KL720, "
                "2xKL520 or KL520:fast), a USB port id or a list of port ids")
    text = _text(value) if not isinstance(value, (list, tuple, int)) else ""
    lowered = text.lower()
    if lowered == "auto":
        return DeviceSpec("auto")
    if lowered == "virtual" or lowered.startswith("virtual:"):
        spec = text.partition(":")[2].strip()
        if lowered.startswith("virtual:"):
            from kp_backend.emulator.spec import SpecError, parse_spec

            try:
                chips = {item["chip"] for item in parse_spec(spec)}
            except SpecError as exc:
                raise _bad("device", value, f"{expected} ({exc})") from None
            if not chips <= {"KL520", "KL720"}:
                raise _bad("device", value, "virtual dongles of chip KL520 or KL720")
        return DeviceSpec("virtual", spec)
    ports = _port_list(value)
    if ports is None:
        raise _bad("device", value, expected)
    if len(set(ports)) != len(ports):
        raise _bad("device", value, "distinct port ids")
    return DeviceSpec("ports", port_ids=ports)


def _image_format(value: Any) -> ImageFormat | None:
    text = _text(value).upper()
    if text == "AUTO":
        return None
    key = text if text.startswith("KP_IMAGE_FORMAT_") else "KP_IMAGE_FORMAT_" + text
    member = ImageFormat.__members__.get(key)
    if member is None or member is ImageFormat.KP_IMAGE_FORMAT_UNKNOWN:
        names = [n[len("KP_IMAGE_FORMAT_"):] for n in ImageFormat.__members__
                 if n != "KP_IMAGE_FORMAT_UNKNOWN"]
        raise _bad("image_format", value, "auto or one of " + ", ".join(names))
    return member


def _choice(key: str, value: Any, choices: Mapping[str, Any]) -> Any:
    text = _text(value).lower()
    if text not in choices:
        raise _bad(key, value, "one of " + ", ".join(choices))
    return choices[text]


def parse_options(options: Mapping[str, Any] | None) -> KneronOptions:
    """Typed options from a provider-options dict (unknown key -> ``InvalidArgument``)."""
    options = dict(options or {})
    unknown = sorted(str(k) for k in options if str(k) not in OPTION_DOCS)
    if unknown:
        raise InvalidArgument(
            f"KneronExecutionProvider does not know the option(s) {', '.join(unknown)}; "
            f"valid options: {', '.join(OPTION_DOCS)}")
    values: dict[str, Any] = {}
    for key, value in options.items():
        key = str(key)
        if key == "device":
            values[key] = _device(value)
        elif key == "model_id":
            values[key] = _int(key, value, 0)
        elif key == "onnx":
            text = _text(value)
            if not text:
                raise _bad(key, value, "the path of an ONNX file")
            values[key] = text
        elif key == "timeout_ms":
            values[key] = _int(key, value, 1)
        elif key == "in_flight":
            text = _text(value).lower()
            values[key] = None if text in ("device", "auto", "") else _int(key, value, 1)
        elif key in ("frame_drop", "resize", "allow_reload"):
            values[key] = _bool(key, value)
        elif key == "input_mode":
            values[key] = _choice(key, value, {m: m for m in INPUT_MODES})
        elif key == "image_format":
            values[key] = _image_format(value)
        elif key == "padding":
            values[key] = _choice(key, value, _PADDING)
        elif key == "normalize":
            values[key] = None if _text(value).lower() == "auto" else _choice(
                key, value, _NORMALIZE)
        elif key == "channel_ordering":
            by_lower = {o.lower(): o for o in OUTPUT_ORDERINGS}
            values[key] = _choice(key, value, by_lower)
    parsed = KneronOptions(**values)
    if not parsed.resize and parsed.padding is not PaddingMode.KP_PADDING_DISABLE \
            and "padding" in values:
        raise _bad("padding", options["padding"], "none when resize is false (the dongle "
                   "refuses padding without resizing, status 108)")
    if not parsed.resize and "padding" not in values:
        parsed = replace(parsed, padding=PaddingMode.KP_PADDING_DISABLE)
    return parsed


def options_table() -> str:
    """The Markdown table of every option (used by the docs)."""
    lines = ["| option | default | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{k}` | {f'`{d}`' if d else '(none)'} | {text} |"
              for k, (d, text) in OPTION_DOCS.items()]
    return "\n".join(lines)

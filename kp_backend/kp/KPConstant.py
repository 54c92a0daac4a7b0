"""``kp.KPConstant.Const``: Kneron's limits (KP_PYTHON_API.md §7, PLUS 2.2 values)."""

import enum

__all__ = ["Const"]


class Const(enum.Enum):
    """A plain ``Enum`` as in Kneron's package, so equal values alias each other."""

    MAX_CROP_BOX = 4
    FD_MAX = 10
    LAND_MARK_POINTS = 5
    FR_FEAT_LENGTH = 256
    YOLO_GOOD_BOX_MAX = 500
    APP_PADDING_BYTES = 28
    MAX_INPUT_NODE_COUNT = 5
    MAX_MODEL_NUM_IN_NEF = 16
    CHANNEL_NUM_RGBA8888 = 4
    CHANNEL_NUM_RAW8 = 1
    CHANNEL_NUM_OTHER_FORMAT = 2

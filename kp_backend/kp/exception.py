"""``kp.ApiKPException`` and the conversion of lower-layer errors into it.

``str(e)`` is exactly Kneron's text (``Error raised in function: connect_devices. Error
code: 28. Description: ApiReturnCode.KP_ERROR_CONNECT_FAILED_28``). Our cause (which device,
what happened) is in ``e.detail`` and in the chained ``KpError`` (``e.__cause__``).
Codes that Kneron's enum does not list become ``KP_ERROR_OTHER_99`` with the original number
in ``e.raw_code`` (Kneron's package raises ``ValueError`` there).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

from kp_backend.protocol.codes import ApiReturnCode
from kp_backend.usb.errors import KpError

__all__ = ["ApiException", "ApiKPException", "api_function", "raise_api"]

F = TypeVar("F", bound=Callable[..., Any])


class ApiException(Exception):
    """Base of the ``kp`` API's exceptions (Kneron's internal base class)."""


class ApiKPException(ApiException):
    """A ``kp`` call failed with a Kneron return code."""

    def __init__(self, api_return_code: int | ApiReturnCode, function_name: str = "",
                 result: Any = None, *, detail: str = "") -> None:
        self.raw_code = int(api_return_code)
        try:
            code = ApiReturnCode(self.raw_code)
        except ValueError:
            code = ApiReturnCode.KP_ERROR_OTHER_99
        self.api_return_code = code
        self.function_name = function_name
        self.result = result
        self.detail = detail
        super().__init__(str(self))

    def __str__(self) -> str:
        return (f"Error raised in function: {self.function_name}. Error code: "
                f"{int(self.api_return_code)}. Description: ApiReturnCode."
                f"{self.api_return_code.name}")

    def __repr__(self) -> str:
        extra = f", detail={self.detail!r}" if self.detail else ""
        return f"ApiKPException({self.api_return_code!s}, {self.function_name!r}{extra})"


def raise_api(code: int, function_name: str, detail: str = "") -> None:
    """Raise ``ApiKPException(code, function_name)`` with ``detail``."""
    raise ApiKPException(code, function_name, detail=detail)


def api_function(fn: F) -> F:
    """Turn ``KpError`` raised inside a public ``kp`` function into ``ApiKPException``
    naming that function."""
    name = fn.__name__

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KpError as exc:
            raise ApiKPException(exc.kp_code, name, detail=str(exc.text)) from exc

    return wrapper  # type: ignore[return-value]

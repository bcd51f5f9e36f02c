"""asynclink: install many wheels into one site-packages at once, awaited from async code.

The core is :func:`link_wheels`, which places unpacked wheels into a site-packages directory
concurrently with one of four :class:`LinkMode`\\ s, falling back per wheel where a mode cannot
work, and reports module conflicts between the wheels of a batch.
"""

from ._errors import AsyncLinkError as AsyncLinkError
from ._errors import InvalidWheelError as InvalidWheelError
from ._errors import LinkError as LinkError
from ._errors import LockTimeoutError as LockTimeoutError
from ._errors import RollbackError as RollbackError
from ._errors import TargetError as TargetError
from ._events import ConflictFound as ConflictFound
from ._events import Event as Event
from ._events import ModeFellBack as ModeFellBack
from ._events import WheelFinished as WheelFinished
from ._events import WheelLinked as WheelLinked
from ._events import WheelStarted as WheelStarted
from ._events import WheelUnpacked as WheelUnpacked
from ._modes import LinkMode as LinkMode
from ._modes import default_link_mode as default_link_mode
from ._results import Conflict as Conflict
from ._results import Fallback as Fallback
from ._results import LinkResult as LinkResult
from ._results import WheelResult as WheelResult
from ._scheduler import LinkModeFallbackWarning as LinkModeFallbackWarning
from ._scheduler import link_wheels as link_wheels

__all__ = [
    "AsyncLinkError",
    "Conflict",
    "ConflictFound",
    "Event",
    "Fallback",
    "InvalidWheelError",
    "LinkError",
    "LinkMode",
    "LinkModeFallbackWarning",
    "LinkResult",
    "LockTimeoutError",
    "ModeFellBack",
    "RollbackError",
    "TargetError",
    "WheelFinished",
    "WheelLinked",
    "WheelResult",
    "WheelStarted",
    "WheelUnpacked",
    "default_link_mode",
    "link_wheels",
]

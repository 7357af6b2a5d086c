"""Start-up hook that registers ``merge_method: arm`` with MergeKit, in any import order.

Imported by ``mergekit_arm_autoregister.pth`` at interpreter start-up. It imports
neither torch nor mergekit: it installs a ``sys.meta_path`` finder that wraps the
loaders of ``mergekit.merge_methods`` and of this package's own submodules, and
calls :func:`mergekit_arm.register` as soon as both hold:

* ``mergekit.merge_methods`` has finished executing, and
* no module of this package is half-executed in this thread (registering imports
  ``mergekit_arm.merge_methods.arm``; when that very import is what pulled MergeKit
  in, registration waits until it has finished).

The finder then removes itself. Processes that never import MergeKit pay only for
this module and one string test per import.

Set ``MERGEKIT_ARM_NO_AUTOREGISTER=1`` to switch the hook off.
"""

from __future__ import annotations

import os
import sys
from _thread import get_ident

_TARGET = "mergekit.merge_methods"
_OWN_PREFIX = "mergekit_arm."


class _NotifyAfterExec:
    """Wraps a module's real loader; tells the hook when the module has executed."""

    def __init__(self, wrapped: object, hook: _RegistrationHook, own: bool) -> None:
        self._wrapped = wrapped
        self._hook = hook
        self._own = own

    def create_module(self, spec):
        return self._wrapped.create_module(spec)

    def exec_module(self, module) -> None:
        if self._own:
            self._hook.entered()
            try:
                self._wrapped.exec_module(module)
            finally:
                self._hook.left()
        else:
            self._wrapped.exec_module(module)
            self._hook.mergekit_ready = True
        self._hook.try_register()

    def __getattr__(self, name):
        return getattr(self._wrapped, name)


class _RegistrationHook:
    """The ``sys.meta_path`` finder; answers only for MergeKit's methods and our modules."""

    def __init__(self) -> None:
        self.mergekit_ready = False
        self._depth: dict[int, int] = {}  # thread -> how many of our modules are executing
        self._finding: set[tuple[int, str]] = set()
        self._busy = False
        self.done = False

    def find_spec(self, fullname, path, target=None):
        if self.done or (fullname != _TARGET and not fullname.startswith(_OWN_PREFIX)):
            return None
        key = (get_ident(), fullname)
        if key in self._finding:  # another finder asked the meta path again
            return None
        self._finding.add(key)
        try:
            spec = self._find_elsewhere(fullname, path, target)
        finally:
            self._finding.discard(key)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _NotifyAfterExec(spec.loader, self, own=fullname != _TARGET)
        return spec

    def _find_elsewhere(self, fullname, path, target):
        """The spec the rest of ``sys.meta_path`` would give without us."""
        for finder in list(sys.meta_path):
            find_spec = getattr(finder, "find_spec", None)
            if finder is self or find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                return spec
        return None

    def entered(self) -> None:
        thread = get_ident()
        self._depth[thread] = self._depth.get(thread, 0) + 1

    def left(self) -> None:
        thread = get_ident()
        depth = self._depth.get(thread, 1) - 1
        if depth:
            self._depth[thread] = depth
        else:
            self._depth.pop(thread, None)

    def try_register(self) -> None:
        """Register once MergeKit is loaded and none of our modules is half-executed."""
        if self.done or self._busy or not self.mergekit_ready or self._depth.get(get_ident()):
            return
        self._busy = True
        try:
            from mergekit_arm import register

            register()
        except Exception as error:  # never break mergekit itself
            import warnings

            warnings.warn(
                f"mergekit-arm could not register 'arm' with MergeKit: {error!r}. "
                "Call mergekit_arm.register() yourself to see the full error.",
                RuntimeWarning,
                stacklevel=2,
            )
        finally:
            self._busy = False
            self.done = True
            uninstall()


_HOOK = _RegistrationHook()


def uninstall() -> None:
    """Remove the finder (registration already done, or not wanted)."""
    if _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)


def install() -> None:
    """Install the hook (idempotent); register at once if MergeKit is already loaded."""
    if os.environ.get("MERGEKIT_ARM_NO_AUTOREGISTER") or _HOOK.done:
        return
    from mergekit_arm.errors import install_excepthook

    install_excepthook()  # an uncaught ArmError prints `mergekit-arm: <message>` first
    if _TARGET in sys.modules:
        _HOOK.mergekit_ready = True
        _HOOK.try_register()
        return
    if _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)


install()

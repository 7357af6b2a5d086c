"""Start-up hook that registers ``merge_method: arm`` with MergeKit, lazily.

Imported by ``mergekit_arm_autoregister.pth`` at interpreter start-up. It imports
neither torch nor mergekit: it installs a one-shot ``sys.meta_path`` finder that
waits for ``mergekit.merge_methods`` to be imported, lets that package finish
executing, then calls :func:`mergekit_arm.register`. Processes that never import
MergeKit pay only for this module (well under a millisecond).

Set ``MERGEKIT_ARM_NO_AUTOREGISTER=1`` to switch the hook off.
"""

from __future__ import annotations

import os
import sys

_TARGET = "mergekit.merge_methods"


class _RegisterAfterExec:
    """Wraps the real loader of ``mergekit.merge_methods``; registers after exec."""

    def __init__(self, wrapped: object) -> None:
        self._wrapped = wrapped

    def create_module(self, spec):
        return self._wrapped.create_module(spec)

    def exec_module(self, module) -> None:
        self._wrapped.exec_module(module)
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

    def __getattr__(self, name):
        return getattr(self._wrapped, name)


class _MergeMethodsFinder:
    """One-shot finder: only answers for ``mergekit.merge_methods``."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _TARGET:
            return None
        # Remove ourselves first so the real lookup below does not recurse.
        _uninstall()
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _RegisterAfterExec(spec.loader)
        return spec


_FINDER = _MergeMethodsFinder()


def _uninstall() -> None:
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)


def install() -> None:
    """Install the hook (idempotent); register at once if MergeKit is loaded."""
    if os.environ.get("MERGEKIT_ARM_NO_AUTOREGISTER"):
        return
    from mergekit_arm.errors import install_excepthook

    install_excepthook()  # an uncaught ArmError prints `mergekit-arm: <message>` first
    if _TARGET in sys.modules:
        from mergekit_arm import register

        register()
        return
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


install()

"""mergekit-arm's merge methods and their (idempotent) registration with MergeKit."""

from __future__ import annotations

import threading

_LOCK = threading.Lock()


def methods() -> dict:
    """Name -> MergeKit method object of every method this package provides."""
    from mergekit_arm.merge_methods.arm import arm_merge_method

    return {arm_merge_method.spec.name: arm_merge_method}


def register_all() -> None:
    """Register every method with MergeKit's public registry, once.

    Uses only ``registry.registered_methods`` and ``registry.register``. A name MergeKit
    already knows is left alone when it is our own method, and is an error when it is
    someone else's (two plugins claiming ``arm``).
    """
    from mergekit.merge_methods import registry

    from mergekit_arm.quiet import silence_mergekit_dtype_deprecation

    silence_mergekit_dtype_deprecation()  # MergeKit's own torch_dtype use, on every merge
    ours = methods()  # imports our modules before the lock: an import may register too
    with _LOCK:
        known = {method.spec.name: method for method in registry.registered_methods()}
        for name, method in ours.items():
            existing = known.get(name)
            if existing is None:
                registry.register(method)
            elif existing is not method and getattr(existing, "implementation", None) is not getattr(
                method, "implementation", None
            ):
                raise RuntimeError(
                    f"another package already registered a MergeKit method named {name!r} "
                    f"({existing!r}); uninstall it or rename ours"
                )


__all__ = ["methods", "register_all"]

"""expspec kernels: the pure computation behind every experiment.

Nothing in this package imports pytest, fixtures or experiments; the arrows go
experiments -> fixtures -> kernels. One concept per module.

It installs as ``expspec.kernels``. Top-level ``kernels`` is Hugging Face's hub-kernels
package, which transformers imports from its activations (a dependency since 5.25). Where
this repo's root is on sys.path - ``python -c``/``-m`` or a notebook started here, pytest's
rootdir - the folder would shadow it and break every model import, so imported under that
name it hands the name over to the installed package (or fails as a missing one would).
The package is versionless for the same reason: transformers' probe reads the version of
a distribution named ``kernels`` and must never find one here. See tests/test_lm.py.
"""

if __name__ == "kernels":
    import importlib.machinery
    import importlib.util
    import os
    import sys

    _root = os.path.realpath(os.path.dirname(os.path.dirname(__file__)))
    _path = [entry for entry in sys.path if os.path.realpath(entry or os.curdir) != _root]
    _spec = importlib.machinery.PathFinder.find_spec("kernels", _path)
    if _spec is None or _spec.loader is None:
        raise ModuleNotFoundError("No module named 'kernels' (this repo's kernels/ folder is expspec.kernels)",
                                  name="kernels")
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["kernels"] = _module  # the import system returns what sys.modules holds
    _spec.loader.exec_module(_module)

"""expspec kernels: the pure computation behind every experiment.

Nothing in this package imports pytest, fixtures or experiments; the arrows go
experiments -> fixtures -> kernels. One concept per module.

It installs as ``expspec.kernels``. Top-level ``kernels`` is Hugging Face's hub-kernels
package, which transformers imports from its activations (a dependency since 5.25). Where
this repo's root is on sys.path - ``python -c``/``-m`` or a notebook started here, pytest's
rootdir - the folder would shadow it and break every model import, so imported under that
name it hands the name over to the installed package. It skips every sys.path entry that
holds a copy of this folder (two checkouts on sys.path must not hand the name to each other).
With no hub package installed it stays, empty, under that name: the package is versionless,
so transformers' probe (which reads the version of a distribution named ``kernels``) finds
none and reports the hub package unavailable, as it would without this folder.
See tests/test_lm.py.
"""

EXPSPEC_KERNELS = True  # marks this folder's __init__: a sys.path entry holding it never has the hub package

if __name__ == "kernels":
    import importlib.machinery
    import importlib.util
    import os
    import sys

    def _holds_this_folder(entry: str) -> bool:
        try:
            with open(os.path.join(entry or os.curdir, "kernels", "__init__.py"), encoding="utf-8") as init:
                return "\nEXPSPEC_KERNELS = True" in init.read()
        except (OSError, UnicodeDecodeError):
            return False

    _path = [entry for entry in sys.path if not _holds_this_folder(entry)]
    _spec = importlib.machinery.PathFinder.find_spec("kernels", _path)
    if _spec is not None and _spec.loader is not None:
        _module = importlib.util.module_from_spec(_spec)
        sys.modules["kernels"] = _module  # the import system returns what sys.modules holds
        _spec.loader.exec_module(_module)

"""expspec kernels: the pure computation behind every experiment.

Nothing in this package imports pytest, fixtures or experiments; the arrows go
experiments -> fixtures -> kernels. One concept per module.

(The package is deliberately versionless: transformers probes for an unrelated hub
package that is also called ``kernels`` and must not mistake this one for it; see
tests/test_lm.py.)
"""

"""The one power-law fitter (offset-free and with an offset, bootstrap CIs). Every fit
in the suite - correlation decay, entropy decay, calibration, coverage - goes through it."""

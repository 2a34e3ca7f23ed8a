"""`workshop bench`, a maintainer's tool kept beside its variants and out of the learner's
package: model.py (what a run is and measured), runner.py (the run), report.py (what it says)."""

"""The pieces of the fine-tuning benchmark ``benchmarks/cifar100.py``, one job per module.

- :mod:`~lccbench.config`: the command line and the configuration it resolves to;
- :mod:`~lccbench.data`: images loaded, subsampled and turned into network inputs;
- :mod:`~lccbench.models`: the fine-tuned network and the per-epoch callbacks;
- :mod:`~lccbench.methods`: one sklcc estimator per method name, and the tuning;
- :mod:`~lccbench.measure`: peak memory of a fit, and the machine;
- :mod:`~lccbench.stats`: the statistics a report states;
- :mod:`~lccbench.report`: JSON, Markdown and plots.

Everything from sklcc is taken through its public API. The scripts in ``benchmarks/``
import this package because Python searches a script's own folder for modules; the
tests, through pytest's ``pythonpath = ["benchmarks"]`` setting.
"""

"""``python -m fastact study``: when is Leaky ReLU better than ReLU?  Measured on your data and machine.

Trains an MLP and a small CNN built only from fastact's fused calls (forward and
backward), with each activation, over seeds and regimes that provoke dying units,
and reports test accuracy with 95% intervals and the fraction of dead units per
hidden layer and epoch (README.md, "When is Leaky ReLU better than ReLU?").

    >>> from fastact.study.cli import main
    >>> main(["--quick", "--markdown", "study.md"])      # doctest: +SKIP

Modules: ``data`` (digits or an .npz), ``layers`` and ``networks`` (the models and
the loss), ``optim`` (SGD with momentum, Adam), ``grid`` (what runs), ``runner``
(training), ``stats`` (t intervals), ``summary`` (rows), ``report`` (Markdown, plot),
``cli``.
"""

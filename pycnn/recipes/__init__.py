"""Complete training recipes: a model, its data pipeline, optimizer and schedule, and how it
is evaluated, as one call (``python -m pycnn train --recipe NAME``).

* :mod:`pycnn.recipes.speedrun`: airbench94's CIFAR-10 recipe (94% in about ten epochs).
"""

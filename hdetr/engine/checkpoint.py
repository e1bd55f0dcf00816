"""The former name of :mod:`hdetr.engine.training_checkpoint`, for imports written against it."""
from hdetr.engine.training_checkpoint import *  # noqa: F401,F403

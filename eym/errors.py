"""Errors with a message for the user, not a traceback: the stage command lines print them in one line."""


class EYMError(Exception):
    """A failure the user can act on; the message says what happened and what to do."""


class InputError(EYMError):
    """Bad or missing input: the message names the file and what to do about it."""


class MissingWeightsError(InputError):
    """Pretrained weights that are not on this machine: the message says where they were looked
    for and how to provide them."""


class TrainingError(EYMError):
    """Tuning went wrong (e.g. the loss became NaN); nothing was saved."""

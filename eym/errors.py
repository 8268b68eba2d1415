"""The error type for bad input and missing weights: a message for the user, not a traceback."""


class InputError(Exception):
    """Bad or missing input: the message names the file and what to do about it."""


class MissingWeightsError(InputError):
    """Pretrained weights that are not on this machine: the message says where they were looked
    for and how to provide them."""

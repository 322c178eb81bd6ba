"""The one exception type the command-line tools turn into a clear message and exit code 2."""


class HOFAMInputError(ValueError):
    """Bad user input: a file that cannot be read, a wrong size, a missing mask, ...

    The message always names the offending file or setting and says what is wrong.
    """

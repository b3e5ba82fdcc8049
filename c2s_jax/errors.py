"""The error users see for bad input: it names the file, field or key and says what to do."""

# How an I/O failure during an atomic write is annotated with its target (a PEP 678 note),
# so the one-line report names the file the user asked for, not a temporary one.
WRITING_NOTE = "while writing "


class InputError(ValueError):
    """Raised for unusable user input (a file, an AnnData field, a config key).

    The message always names the offending file/field/key and suggests a fix, so the
    command line can print it as is, without a traceback.
    """


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step, the last good
    checkpoint and the setting to change."""

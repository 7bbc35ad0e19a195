"""The one exception type users see as a short message instead of a traceback.

Imports nothing (no TensorFlow), so the CLI can import it before any mode runs.
"""

# Prefix of a FlexsegError raised inside tf.data (`flexseg.data.pipeline`): TensorFlow re-raises it as
# its own error type, and the CLI finds the marker in that message to print a clean one.
ERROR_MARKER = "[flexseg] "


class FlexsegError(Exception):
    """A problem the user can fix: bad config value, missing file, unusable data.

    The CLI catches it once, prints its message as one paragraph and exits non-zero.
    The message names the config key or file at fault and says what to do.
    """

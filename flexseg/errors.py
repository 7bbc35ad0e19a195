"""The one exception type users see as a short message instead of a traceback."""


class FlexsegError(Exception):
    """A problem the user can fix: bad config value, missing file, unusable data.

    The CLI catches it once, prints its message as one paragraph and exits non-zero.
    The message names the config key or file at fault and says what to do.
    """

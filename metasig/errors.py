"""The one error type for bad input: it always names the file, the field and what is wrong."""


class InputError(ValueError):
    """Bad user input, found before any expensive work starts."""

    def __init__(self, file, field, problem):
        self.file, self.field, self.problem = str(file), str(field), problem
        super().__init__(f"{self.file}: field '{self.field}': {problem}")

    def __reduce__(self):  # so that errors raised in worker processes arrive intact
        return (type(self), (self.file, self.field, self.problem))


def few(items, n=5):
    """The first `n` of `items` for a message, and how many there are in all when that is more."""
    items = [str(i) for i in items]
    return ", ".join(items[:n]) + (f", ... ({len(items)} in all)" if len(items) > n else "")

"""The one error type the builder raises for bad source data, and how to read a chain of errors."""


class SourceFormatError(ValueError):
    """A source file does not have the official format.

    The message is one line that names the file and, where there is one, the record, so that a
    failed build tells the user exactly what to look at.
    """

    def __init__(self, filename: str, message: str, record=None):
        where = filename if record is None else f"{filename}: record {record}"
        super().__init__(f"{where}: {message}")
        self.filename = filename
        self.message = message
        self.record = record

    def __reduce__(self):
        # Shards may fail inside `num_proc` workers; the error must survive the trip back.
        return type(self), (self.filename, self.message, self.record)


def exception_chain(error: BaseException) -> list[BaseException]:
    """The error and what caused it, outermost first (datasets and zipfile wrap the errors we raise)."""
    chain = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain

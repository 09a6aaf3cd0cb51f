"""The error a user sees as one line: which flag is wrong and how to fix it."""


class UserInputError(Exception):
    """Bad input from the command line, reported without a traceback."""

    def __init__(self, flag: str, problem: str) -> None:
        super().__init__(f"{flag}: {problem}")
        self.flag = flag
        self.problem = problem


class RunStopped(Exception):
    """A run stopped by the user (Ctrl-C); the message says where its state is and how to go on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

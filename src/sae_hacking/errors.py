"""The error a user sees as one line: which flag is wrong and how to fix it."""


class UserInputError(Exception):
    """Bad input from the command line, reported without a traceback."""

    def __init__(self, flag: str, problem: str) -> None:
        super().__init__(f"{flag}: {problem}")
        self.flag = flag
        self.problem = problem

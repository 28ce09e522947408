"""The base of every error a user can fix (a setting, a file, a host): stages print its message
as one line; any other exception is a bug and keeps its traceback."""


class UserError(Exception):
    def __str__(self) -> str:
        text = super().__str__()
        # Raised in a DataLoader worker, it reaches the main process re-raised by torch with the
        # worker's traceback in its message ("Caught … in DataLoader worker process 0. Original
        # Traceback …"): the user's line is the traceback's last, after the exception's name.
        if "\nOriginal Traceback" in text:
            return text.rstrip().splitlines()[-1].split(": ", 1)[-1]
        return text

"""The base of every error a user can fix (a setting, a file, a host): stages print its message
as one line; any other exception is a bug and keeps its traceback."""


class UserError(Exception):
    pass

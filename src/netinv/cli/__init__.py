"""The ``netinv`` command line: each command checks its flags, makes one API call and prints."""

"""The composition root: the processes that host the domains and the bridge, and their commands.

`launcher.py` runs them (`up`: everything in one process; `serve`: one domain or the bridge),
`cli.py` is the `agora-mesh` command and the subcommands the client's `agora` finds through the
`agora.commands` entry points, `dead_letters.py` the bus's operator commands. Not a domain: it is
the one package that imports the kit, the domains and the gateway; the kit imports none of them.
"""

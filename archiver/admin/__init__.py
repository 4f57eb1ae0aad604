"""Administration that the backup client must never be able to do: applying and simulating lifecycle rules.

Nothing in the backup path imports this package. It runs with separate admin credentials.
"""

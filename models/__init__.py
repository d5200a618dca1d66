"""Networks and losses as pure tensor code: no file I/O, no argument parsing, no device logic."""

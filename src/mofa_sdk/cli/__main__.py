"""``python -m mofa_sdk.cli``: the same as the ``mofa`` command."""

from . import main

main()

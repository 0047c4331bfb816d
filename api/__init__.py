"""The HTTP interface (FastAPI) and the `zizhu` command line: thin routes over adapters.cases."""

"""The APIs of ``mofa serve``, one package each: ``native`` and ``openai``. Their routes call the run engine
(``server.runs``) through the HTTP layer's typed dependencies (``server.http``)."""

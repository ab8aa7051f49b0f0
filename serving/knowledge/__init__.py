"""Project knowledge bases: parsing and chunking documents, indexing them, and hybrid retrieval.

Django-free: ``parsing``, ``chunking``, ``index``, ``embedding``. Django: ``services`` (writes),
``selectors`` (reads), ``retrieval`` (the search the answering side calls), ``views``, ``api``.
"""

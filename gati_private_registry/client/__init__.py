"""``gati``: the developers' client of Gati Private Registry.

A separate program that talks HTTP to the registry (``/npm/`` and ``/api/``): it never
imports Flask, ``services`` or ``storage``. The pieces, each replaceable on its own:

* :mod:`.config`: which registry, where the token and the pinned keys live;
* :mod:`.http`: requests, and server errors turned into :class:`~.errors.ClientError`;
* :mod:`.semver`, :mod:`.resolver`, :mod:`.lockfile`: npm's version picking and tree
  shape, and the deterministic ``gati-lock.json``;
* :mod:`.cache`, :mod:`.extract`, :mod:`.installer`: content-addressed tarballs, safe
  extraction, the ``node_modules`` layout;
* :mod:`.trust`: organisation keys (trust on first use) and signature checks;
* :mod:`.scaffold`, :mod:`.manifest`, :mod:`.pack`: ``create`` and ``publish``;
* :mod:`.appconfig`: the ``modules`` section of ``gati.config.json`` / ``.ts``;
* :mod:`.output` and :mod:`.commands`: what people and scripts see.
"""

"""``python -m bench``: the hot RPCs against bare Celery, on SQLite and PostgreSQL (see
``bench.rpcs``); ``python -m bench placement``: placement end to end (see
``bench.placement``)."""

import sys

if sys.argv[1:2] == ["placement"]:
    from bench.placement import main

    main(sys.argv[2:])
else:
    from bench.rpcs import main

    main()

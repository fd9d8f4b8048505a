"""``python -m bench``: the hot RPCs against bare Celery, on SQLite and PostgreSQL (see
``bench.rpcs``); ``python -m bench placement``: placement end to end (see
``bench.placement``); ``python -m bench idle``: what idle agents cost Redis (see
``bench.idle_consumers``); ``python -m bench relay``: what relaying an outbox row costs
(see ``bench.relay``)."""

import sys

if sys.argv[1:2] == ["placement"]:
    from bench.placement import main

    main(sys.argv[2:])
elif sys.argv[1:2] == ["relay"]:
    from bench.relay import main

    main(sys.argv[2:])
elif sys.argv[1:2] == ["idle"]:
    from bench.idle_consumers import main

    main(sys.argv[2:])
else:
    from bench.rpcs import main

    main()

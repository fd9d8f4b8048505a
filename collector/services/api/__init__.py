"""The original REST API's side: ``requests`` (one checked model per request), ``instances``,
``volumes`` and ``hosts`` (the services acting on them), ``rows`` (what instances and volumes
share)."""

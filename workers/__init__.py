"""Every process of an installation: the agent library (``agent/``), the worker roles and
entry points, the supervisor, Flower, the embedded Redis, the ``collector`` command
(``cli/``), and the demo with its reference agents and world builder (``demo/``)."""

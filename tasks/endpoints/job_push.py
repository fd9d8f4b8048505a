"""``jobqueue-proxy.push_job``: an agent's job submission, recorded and never lost."""

from collector.services.jobs import push as job_push
from tasks.registry import Endpoint

endpoint = Endpoint("jobqueue-proxy").expose(job_push.push_job)

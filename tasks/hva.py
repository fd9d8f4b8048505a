"""``hva-collector.*`` tasks."""

from collector.services import hva, images
from tasks.registry import Endpoint

endpoint = Endpoint("hva-collector").expose(
    hva.get_instance,
    hva.update_instance,
    hva.finalize_instance,
    images.update_image,
)

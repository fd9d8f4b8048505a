"""``sta-collector.*`` tasks: what storage agents call."""

from collector import wire
from collector.services import sta
from tasks.registry import Endpoint

endpoint = Endpoint(wire.STA_COLLECTOR).reads(
    sta.get_available_volumes, sta.get_volume, sta.get_snapshot, sta.get_backup_object,
    sta.get_image,
).writes(
    sta.update_volume, sta.update_snapshot, sta.update_backup_object,
    sta.register_backup_object_transfer, sta.register_image_transfer,
    sta.post_process_backup_image, sta.update_image,
)

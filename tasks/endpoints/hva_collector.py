"""``hva-collector.*`` tasks: the 25 methods hypervisor agents call."""

from collector import wire
from collector.services import hva, hva_netfilter, hva_network, images
from tasks.registry import Endpoint

endpoint = Endpoint(wire.HVA_COLLECTOR).reads(
    hva.get_instance,
    hva_network.get_network,
    hva_network.get_nic,
    hva_network.get_networks,
    hva_network.get_host_nodes_index,
    hva_network.get_host_node,
    hva_network.get_dhcp_conf,
    hva_network.get_instance_monitor_data,
    hva_netfilter.get_security_groups_of_vnic,
    hva_netfilter.get_referencers_of_security_group,
    hva_netfilter.get_rules_of_security_group,
    hva_netfilter.get_referencees_of_security_group,
    hva_netfilter.get_netfilter_security_group,
    hva_netfilter.get_netfilter_vnic,
    hva_netfilter.get_netfilter_vnic_with_node_id,
    hva_netfilter.get_netfilter_network,
    hva_netfilter.get_netfilter_data,
    hva_network.get_resource_monitor_data,
    hva_network.get_resource_monitor_ids,
    hva_network.get_external_monitor_target_host_nodes,
).writes(
    hva.update_instance,
    hva.finalize_instance,
    images.update_image,
    hva_network.prepare_host_node_vnet,
    hva_network.switch_instance_host_node,
)

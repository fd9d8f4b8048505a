"""``hva-collector.*`` tasks: the 25 methods hypervisor agents call."""

from collector import wire
from collector.services import host_nodes, hva, hva_netfilter, hva_network, images, monitoring
from tasks.registry import Endpoint

endpoint = Endpoint(wire.HVA_COLLECTOR).reads(
    hva.get_instance,
    hva_network.get_network,
    hva_network.get_nic,
    hva_network.get_networks,
    host_nodes.get_host_nodes_index,
    host_nodes.get_host_node,
    hva_network.get_dhcp_conf,
    monitoring.get_instance_monitor_data,
    hva_netfilter.get_security_groups_of_vnic,
    hva_netfilter.get_referencers_of_security_group,
    hva_netfilter.get_rules_of_security_group,
    hva_netfilter.get_referencees_of_security_group,
    hva_netfilter.get_netfilter_security_group,
    hva_netfilter.get_netfilter_vnic,
    hva_netfilter.get_netfilter_vnic_with_node_id,
    hva_netfilter.get_netfilter_network,
    hva_netfilter.get_netfilter_data,
    monitoring.get_resource_monitor_data,
    monitoring.get_resource_monitor_ids,
    monitoring.get_external_monitor_target_host_nodes,
).writes(
    hva.update_instance,
    hva.finalize_instance,
    images.update_image,
    hva_network.prepare_host_node_vnet,
    host_nodes.switch_instance_host_node,
)

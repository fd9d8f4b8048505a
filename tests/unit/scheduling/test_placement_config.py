"""Scheduler configuration: defaults = the original's sample, TOML files, one-line errors."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest

from collector.errors import SchedulerConfigError, UnknownServiceType
from collector.scheduling import placement_config as config
from collector.scheduling.strategies import catalog as registry
from collector.scheduling.strategies.host_node import FindFirst, LeastUsage
from collector.scheduling.strategies.ip_address import Incremental, SpecifyIP
from collector.scheduling.strategies.mac_address import Default
from collector.scheduling.strategies.protocols import HostStrategy
from collector.scheduling.vifs import PerInstance, VifsRequestParam
from tests.support.paths import ROOT

EXAMPLE = ROOT / "docs" / "scheduler.example.toml"


@pytest.fixture(autouse=True)
def _fresh_config(monkeypatch):
    monkeypatch.delenv(config.ENV_VAR, raising=False)
    config.reload_scheduler_config()
    yield
    monkeypatch.delenv(config.ENV_VAR, raising=False)
    config.reload_scheduler_config()


def _std(**overrides):
    doc = copy.deepcopy(config.DEFAULTS["service_types"]["std"])
    doc.update(overrides)
    return {"service_types": {"std": doc}}


def test_defaults_are_the_original_sample_configuration():
    cfg = config.scheduler_config()
    assert cfg.source == "built-in defaults"
    assert cfg.default_service_type == "std" and set(cfg.service_types) == {"std", "lb"}
    assert (cfg.mac_address_vendor_id, cfg.create_volume_min_size,
            cfg.create_volume_max_size) == ("525400", 10, 3000)
    std, lb = cfg.service_type("std"), cfg.service_type("lb")
    assert std.host_node == LeastUsage("memory") and std.host_node_ha == std.host_node
    assert std.network == PerInstance(VifsRequestParam(), {})
    assert lb.network == VifsRequestParam() and lb.kind == "LbServiceType"
    for st in (std, lb):
        assert st.mac_address == Default() and st.ip_address == Incremental()


def test_service_type_none_is_the_default_and_unknown_is_typed():
    cfg = config.scheduler_config()
    assert cfg.service_type(None).name == "std" and cfg.service_type("").name == "std"
    with pytest.raises(UnknownServiceType, match="'gold'"):
        cfg.service_type("gold")


def test_the_shipped_example_file_loads_and_equals_the_defaults():
    example = config.load_scheduler_config(str(EXAMPLE))
    defaults = config.scheduler_config()
    assert example.source == str(EXAMPLE)
    for name in ("std", "lb"):
        a, b = example.service_type(name), defaults.service_type(name)
        assert (a.host_node, a.storage_node, a.network, a.mac_address, a.ip_address) == \
            (b.host_node, b.storage_node, b.network, b.mac_address, b.ip_address)


def test_file_named_by_the_environment_is_loaded_once_and_reloaded_on_demand(
        tmp_path, monkeypatch):
    path = tmp_path / "scheduler.toml"
    path.write_text('[service_types.std]\nhost_node_scheduler = "FindFirst"\n'
                    'storage_node_scheduler = "LeastUsage"\n'
                    'network_scheduler = "VifsRequestParam"\n'
                    'ip_address_scheduler = "SpecifyIP"\n')
    monkeypatch.setenv(config.ENV_VAR, str(path))
    first = config.reload_scheduler_config()
    assert first.service_type().host_node == FindFirst()
    assert first.service_type().ip_address == SpecifyIP()
    assert first.service_type().mac_address == Default()  # filled in, as the original
    path.write_text(path.read_text().replace("FindFirst", "LeastUsage"))
    assert config.scheduler_config() is first  # cached: one read per process
    assert config.reload_scheduler_config().service_type().host_node == LeastUsage()


def test_sort_priority_cpu_and_per_instance_named_entries():
    cfg = config.parse_config(_std(
        host_node_scheduler={"strategy": "LeastUsage", "sort_priority": "cpu"},
        network_scheduler={"strategy": "PerInstance", "default": "VifsRequestParam",
                           "add": {"manual": {"strategy": "VifsRequestParam",
                                              "template": {"eth0": "nw-demo1"}}}}))
    st = cfg.service_type("std")
    assert st.host_node == LeastUsage("cpu")
    assert st.network.named["manual"] == VifsRequestParam({"eth0": "nw-demo1"})


def test_a_missing_file_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(config.ENV_VAR, str(tmp_path / "absent.toml"))
    with pytest.raises(SchedulerConfigError, match=rf"^{config.ENV_VAR}: cannot read "):
        config.reload_scheduler_config()


def test_invalid_toml_is_one_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("default_service_type = \n")
    with pytest.raises(SchedulerConfigError) as info:
        config.load_scheduler_config(str(path))
    assert "invalid TOML" in str(info.value) and "\n" not in str(info.value)


BAD_CONFIGS = [
    (_std(host_node_scheduler={"strategy": "LeastUsage", "sort_priority": "disk"}),
     'service_types.std.host_node_scheduler.sort_priority: must be "memory" or "cpu"'),
    (_std(host_node_scheduler={"strategy": "LeastUsage", "sort_priority": "memory",
                               "max_results": 3}),
     "service_types.std.host_node_scheduler.max_results: unknown option"),
    (_std(host_node_scheduler="MostUsage"),
     "service_types.std.host_node_scheduler: unknown host_node strategy 'MostUsage'"),
    (_std(storage_node_scheduler={"sort": "x"}),
     "service_types.std.storage_node_scheduler.strategy: required"),
    (_std(storage_node_scheduler=3),
     "service_types.std.storage_node_scheduler: must be a strategy name or a table"),
    (_std(ip_address_scheduler="Random"),
     "service_types.std.ip_address_scheduler: unknown ip_address strategy 'Random'"),
    (_std(mac_address_scheduler="ByHostNodeGroupX"),
     "service_types.std.mac_address_scheduler: unknown mac_address strategy"),
    (_std(network_scheduler={"strategy": "PerInstance", "add": {"nat": "NatTwoToTwo"}}),
     "service_types.std.network_scheduler.add.nat: unknown network strategy 'NatTwoToTwo'"),
    (_std(network_scheduler={"strategy": "PerInstance", "add": ["x"]}),
     "service_types.std.network_scheduler.add: must be a table of strategies"),
    (_std(network_scheduler={"strategy": "VifsRequestParam", "template": {"eth0": 1}}),
     "service_types.std.network_scheduler.template: must be a table of strings"),
    (_std(**{"class": "GoldServiceType"}),
     'service_types.std.class: must be "StdServiceType" or "LbServiceType"'),
    (_std(colour="blue"), "service_types.std.colour: unknown key"),
    (_std(image_id="wmi-lb"), "service_types.std.image_id: unknown key"),
    ({"service_types": {"std": {"storage_node_scheduler": "LeastUsage",
                                "network_scheduler": "VifsRequestParam"}}},
     "service_types.std.host_node_scheduler: required"),
    ({"service_types": {"std": "LeastUsage"}}, "service_types.std: must be a table"),
    ({"service_types": {}}, "service_types: at least one service type is required"),
    ({"bogus": 1}, "bogus: unknown key"),
    ({"default_service_type": "gold"},
     "default_service_type: 'gold' is not a configured service type"),
    ({"mac_address_vendor_id": "52540"}, "mac_address_vendor_id: must be 6 hex digits"),
    ({"mac_address_vendor_id": 525400}, "mac_address_vendor_id: must be 6 hex digits"),
    ({"create_volume_min_size": -1}, "create_volume_min_size: must be an integer >= 0"),
    ({"create_volume_max_size": "3000"}, "create_volume_max_size: must be an integer >= 0"),
    ({"create_volume_min_size": 50, "create_volume_max_size": 20},
     "create_volume_max_size: must be >= create_volume_min_size"),
    ({"stopped_instance_usage_factor": -0.5},
     "stopped_instance_usage_factor: must be a number >= 0"),
    ({"features": {"openvnet": "yes"}}, "features.openvnet: must be true or false"),
    ({"features": {"ha": True}}, "features: only the key openvnet is known"),
]


@pytest.mark.parametrize(("doc", "message"), BAD_CONFIGS,
                         ids=[m.split(":")[0] + f"-{i}" for i, (_, m) in enumerate(BAD_CONFIGS)])
def test_a_bad_configuration_is_one_line_naming_the_key(doc, message):
    with pytest.raises(SchedulerConfigError) as info:
        config.parse_config(doc)
    text = str(info.value)
    assert text.startswith(message) and "\n" not in text


def test_a_bad_file_names_the_key_too(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(EXAMPLE.read_text().replace('sort_priority = "memory"\n',
                                                'sort_priority = "disk"\n', 1))
    with pytest.raises(SchedulerConfigError, match=r'^service_types\.std\.host_node_scheduler'
                                                   r'\.sort_priority: must be "memory" or "cpu"$'):
        config.load_scheduler_config(str(path))


def test_a_new_strategy_plugs_in_by_registering_its_name():
    @registry.register("host_node", "TestOnlyPacked")
    def _build(options, where):
        registry.no_other_keys(options, ("spread",), where)
        return ("packed", options.get("spread", False))

    try:
        cfg = config.parse_config(_std(host_node_scheduler={"strategy": "TestOnlyPacked",
                                                            "spread": True}))
        assert cfg.service_type("std").host_node == ("packed", True)
        assert "TestOnlyPacked" in registry.names("host_node")
    finally:
        del registry._BUILDERS["host_node"]["TestOnlyPacked"]


def test_a_dataclass_strategy_is_built_from_its_option_fields():
    @registry.register("host_node", "TestOnlySpread")
    @dataclass(frozen=True)
    class Spread(HostStrategy):
        spread: bool = registry.option(registry.boolean, default=False)
        group: str | None = registry.option(registry.id_of("hng"), default=None, key="in")

        def rank(self, candidates, request):
            return list(candidates)

    def host_node(entry):
        return config.parse_config(_std(host_node_scheduler=entry)).service_type().host_node

    try:
        assert host_node("TestOnlySpread") == Spread()
        assert host_node({"strategy": "TestOnlySpread", "spread": True, "in": "hng-a"}) == \
            Spread(True, "hng-a")
        for options, message in [({"spread": "yes"}, "spread: must be true or false"),
                                 ({"group": "hng-a"}, "group: unknown option"),
                                 ({"in": "nwg-a"}, "in: must be an id hng-")]:
            with pytest.raises(SchedulerConfigError) as info:
                host_node({"strategy": "TestOnlySpread", **options})
            assert str(info.value).startswith(f"service_types.std.host_node_scheduler.{message}")
    finally:
        del registry._BUILDERS["host_node"]["TestOnlySpread"]

from ports import METRICS_OFFSET, free_ports


def test_no_port_handed_out_is_another_ports_metrics_port() -> None:
    ports = free_ports(200)
    assert len(set(ports)) == 200
    taken = set(ports) | {p + METRICS_OFFSET for p in ports}
    assert len(taken) == 400  # no gRPC port is another one's metrics port
    assert not set(free_ports(50)) & taken

# Consul server on each of the three edge nodes (/etc/consul.d/server.hcl).
# Replace the addresses with your edge nodes'; everything else is the
# configuration tests/tests/edge_cluster.rs runs (issue 10's measurements).
datacenter = "edge"
data_dir   = "/var/lib/consul"
server     = true
# Three servers: one may fail and the cluster keeps a quorum.
bootstrap_expect = 3
# This node's address on the edge network; join the others (and itself:
# harmless) until it succeeds, so the boot order does not matter.
bind_addr  = "192.0.2.11"
retry_join = ["192.0.2.11", "192.0.2.12", "192.0.2.13"]
# The HTTP API for the local router and registrar, and on this node's edge
# address for the other edge nodes' routers, which read from it while their
# own server is dead (router --consul-fallback-addr): killing the raft
# leader's Consul on the VIP holder then moves nothing (README, "The edge as
# a cluster"). Keep 8500 closed to anything but the edge nodes.
client_addr = "127.0.0.1 192.0.2.11"
# The web UI on the HTTP port (Consul 1.8's key; `ui_config { enabled = true }`
# from 1.9 on).
ui = true
# Raft timing at production speed: a leader election takes 1-3 s instead of
# 5-15 s with the default multiplier of 5 (measured 13-27 s without any
# answer through the VIP before issue 10, 2.8-3.2 s with this setting).
performance {
  raft_multiplier = 1
}
ports {
  # DNS is not used by the edge; 8600 stays closed.
  dns = -1
}
disable_update_check = true

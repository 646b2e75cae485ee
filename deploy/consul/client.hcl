# Consul client agent on every worker node (/etc/consul.d/client.hcl): the
# registrar registers the node's containers with it; it forwards to the
# servers on the edge nodes.
datacenter = "edge"
data_dir   = "/var/lib/consul"
server     = false
bind_addr  = "192.0.2.21"
retry_join = ["192.0.2.11", "192.0.2.12", "192.0.2.13"]
client_addr = "127.0.0.1"
performance {
  raft_multiplier = 1
}
ports {
  dns = -1
}
disable_update_check = true

# Helpers shared by the bench scripts (sourced, not run).

# A free loopback TCP port.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Polls a command for up to $1 seconds.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then echo "${0##*/}: timed out waiting for: $*" >&2; return 1; fi
    sleep 0.1
  done
}

#!/bin/sh
# /www/cgi-bin/ok of the test image (tests/src/docker.rs) and of
# router/bench/deploy.sh: answers any method (POST included, which busybox
# httpd refuses for static files) with "ok <hostname>", framed by a
# Content-Length (wrk counts a response delimited by the close as a read
# error) and with Connection: close (busybox httpd closes every connection,
# so a proxy must not keep it for another request).
body="ok $(cat /etc/hostname)"
echo "Content-Type: text/plain"
echo "Content-Length: $((${#body} + 1))"
echo "Connection: close"
echo
echo "$body"

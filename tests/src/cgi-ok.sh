#!/bin/sh
# /www/cgi-bin/ok of the test image (tests/src/docker.rs) and of
# router/bench/deploy.sh: answers any method (POST included, which busybox
# httpd refuses for static files) with "ok <hostname>". Its head lines end
# in CRLF (busybox passes a CGI's header lines through as they are, and the
# router refuses a response head with bare line ends), it is framed by a
# Content-Length (wrk counts a response delimited by the close as a read
# error), and says Connection: close (busybox httpd closes every
# connection, so a proxy must not keep it for another request).
body="ok $(cat /etc/hostname)"
printf 'Content-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s\n' "$((${#body} + 1))" "$body"

#!/bin/bash
# HEALTHCHECK of the otfused image: GET /livez on the port of OTFUSED_LISTEN
# through bash's /dev/tcp, so the image needs no curl. Exit 0 when the answer
# is HTTP 200 within 3 s.
port=${OTFUSED_LISTEN##*:}
port=${port:-8080}
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET /livez HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
IFS= read -r -t 3 status <&3 || exit 1
case $status in
  "HTTP/1."[01]" 200"*) exit 0 ;;
  *) exit 1 ;;
esac
